"""The studio: a browser page per domain (``/studio/pointer``, ``/vision``, ``/genomics``, ``/recommend``)
that calls the domain apps' own REST APIs on the same origin. Static HTML, CSS and JavaScript shipped in
this package; nothing is fetched from the internet and the studio holds no model (see :mod:`.app`)."""
