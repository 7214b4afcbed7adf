"""The genomics service as a Ray Serve application (route prefix ``/genomics``).

    POST /genomics/classify        {sequences: [...], task}        -> label and probabilities per sequence
    POST /genomics/embed           {sequences: [...], source}      -> one vector per sequence
    POST /genomics/tag             {sequence, task}                -> per-nucleotide labels as runs
    POST /genomics/variant-effect  {sequence, variants: [{position, alt}]} -> log-likelihood change per variant
    POST /genomics/{classify,embed,tag}/fasta   multipart: a FASTA ``file`` (+ ``task``/``source``),
                                                one result per record
    GET  /genomics/models, /genomics/healthz, /genomics/version, /genomics/docs

Sequences: DNA or RNA letters in any case; ``U`` is read as ``T`` and IUPAC ambiguity codes as ``N``; any
other character is refused (422) with the sequence or record and the position; so are empty sequences.
A sequence longer than the model's context is split into overlapping windows: classify/embed average
them and say how many were used (``windows``), tag averages the windows covering each base, variant
effects are scored on the window around the variant (stated in ``window``). Limits per request: at most
``max_sequences`` sequences and ``max_bases`` bases in total (``max_tag_bases`` for tag, ``max_variants``
variants); over a limit is a 413 naming it.

Models: ``lm`` (the causal language model: embeddings and variant effects), ``classify`` ({task: name})
and ``tag`` ({task: name}), each loaded from the registry's ``@champion`` when the replica starts.

No ``from __future__ import annotations``: Serve's class-based views need real annotations.
"""

from typing import Annotated, Any

from fastapi import File, Form, UploadFile
from pydantic import BaseModel, Field
from ray import serve

from services.common.errors import ERROR_RESPONSES, InputError
from services.common.ingress import ModelIngress, create_app, ingress_options, model_routes
from services.common.schemas import ModelRef, StrictRequest
from services.common.serving import bind_model_server

from .checks import MAX_UPLOAD_BYTES, check_limits, read_fasta_upload, validated
from .server import Classify, Embed, GenomicsServer, ScoreVariants, Substitution, Tag

DEFAULT_MODELS: dict[str, Any] = {
    "lm": "genomics-lm-hyena",
    "classify": {"splice": "genomics-splice-hyena"},
    "tag": {"coding": "genomics-coding-hyena"},
}
MAX_SEQUENCES = 256
MAX_BASES = 1_000_000
MAX_TAG_BASES = 500_000
MAX_VARIANTS = 64

Upload = Annotated[UploadFile, File(description="a FASTA file, plain or gzipped")]


class ClassifyRequest(StrictRequest):
    sequences: list[str] = Field(min_length=1, description="DNA/RNA sequences (A C G T/U, IUPAC codes, any case)")
    task: str = Field("splice", description="a served classification task (GET /genomics/models)")


class EmbedRequest(StrictRequest):
    sequences: list[str] = Field(min_length=1)
    source: str = Field("lm", description="'lm' (the pretrained language model) or a classification task")


class TagRequest(StrictRequest):
    sequence: str
    task: str = Field("coding", description="a served tagging task")


class Variant(StrictRequest):
    position: int = Field(ge=0, description="0-based position in the sequence")
    alt: str = Field(min_length=1, max_length=1, description="the alternative base (A, C, G or T)")


class VariantRequest(StrictRequest):
    sequence: str
    variants: list[Variant] = Field(min_length=1, max_length=MAX_VARIANTS)


class Classified(BaseModel):
    id: str | None = None
    label: str
    probabilities: dict[str, float]
    length: int
    windows: int = Field(description="context windows averaged (1: the sequence fit in one pass)")


class ClassifyResponse(BaseModel):
    results: list[Classified]
    task: str
    model: ModelRef
    batch_size: int


class Embedded(BaseModel):
    id: str | None = None
    vector: list[float]
    length: int
    windows: int


class EmbedResponse(BaseModel):
    results: list[Embedded]
    dim: int
    model: ModelRef
    batch_size: int


class Run(BaseModel):
    start: int = Field(description="0-based, inclusive")
    end: int = Field(description="exclusive")
    label: str
    mean_probability: float


class Tagged(BaseModel):
    id: str | None = None
    runs: list[Run]
    length: int
    windows: int


class TagResponse(Tagged):
    task: str
    model: ModelRef
    batch_size: int


class TagFastaResponse(BaseModel):
    results: list[Tagged]
    task: str
    model: ModelRef
    batch_size: int


class VariantEffect(BaseModel):
    position: int
    ref: str
    alt: str
    delta_log_likelihood: float = Field(description="log p(alt sequence) - log p(reference), natural log")
    window: list[int] = Field(description="[start, end) of the scored region")


class VariantResponse(BaseModel):
    effects: list[VariantEffect]
    model: ModelRef
    batch_size: int


app = create_app(
    "Genomics",
    "HyenaDNA and BEACON-B trained by the suite: sequence classification, embeddings, per-nucleotide tags "
    "and variant effects.",
    max_body_bytes=MAX_UPLOAD_BYTES + (1 << 20),
)


# ---------------------------------------------------------------------------------------------- routes
@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.1})
@serve.ingress(app)
@model_routes(app)
class GenomicsIngress(ModelIngress):
    def __init__(
        self,
        server,
        *,
        tasks: dict[str, list[str]],
        request_timeout_s: float = 30.0,
        max_sequences: int = MAX_SEQUENCES,
        max_bases: int = MAX_BASES,
        max_tag_bases: int = MAX_TAG_BASES,
    ):
        super().__init__(server, request_timeout_s=request_timeout_s)
        self.tasks = tasks
        self.max_sequences, self.max_bases, self.max_tag_bases = max_sequences, max_bases, max_tag_bases

    def _task(self, kind: str, task: str, field: str = "task") -> str:
        if task not in self.tasks[kind]:
            raise InputError(f"{field} must be one of the served {kind} tasks {self.tasks[kind]}, got {task!r}",
                             field=field)  # fmt: skip
        return f"{kind}:{task}"

    def _source(self, source: str) -> str:
        if source == "lm" and self.tasks["lm"]:
            return "lm"
        if source in self.tasks["classify"]:
            return f"classify:{source}"
        choices = (["lm"] if self.tasks["lm"] else []) + self.tasks["classify"]
        raise InputError(f"source must be one of {choices}, got {source!r}", field="source")

    async def _classify(self, sequences, ids, task, field) -> dict[str, Any]:
        key = self._task("classify", task)
        check_limits(sequences, max_sequences=self.max_sequences, max_bases=self.max_bases, field=field)
        clean = validated(sequences, ids, field)
        return await self.call(Classify(model=key, task=task, sequences=clean, ids=ids))

    async def _embed(self, sequences, ids, source, field) -> dict[str, Any]:
        key = self._source(source)
        check_limits(sequences, max_sequences=self.max_sequences, max_bases=self.max_bases, field=field)
        clean = validated(sequences, ids, field)
        return await self.call(Embed(model=key, sequences=clean, ids=ids))

    async def _tag(self, sequences, ids, task, field) -> dict[str, Any]:
        key = self._task("tag", task)
        check_limits(sequences, max_sequences=self.max_sequences, max_bases=self.max_tag_bases, field=field)
        clean = validated(sequences, ids, field)
        result = await self.call(Tag(model=key, sequences=clean, ids=ids))
        return {**result, "task": task}

    @app.post("/classify", response_model=ClassifyResponse, responses=ERROR_RESPONSES)
    async def classify(self, body: ClassifyRequest) -> dict[str, Any]:
        """The label and class probabilities of each sequence."""
        return await self._classify(body.sequences, [None] * len(body.sequences), body.task, "sequences")

    @app.post("/classify/fasta", response_model=ClassifyResponse, responses=ERROR_RESPONSES)
    async def classify_fasta(self, file: Upload, task: Annotated[str, Form()] = "splice") -> dict[str, Any]:
        """Classify every record of a FASTA file (plain or gzipped)."""
        records = read_fasta_upload(await file.read())
        return await self._classify([r.sequence for r in records], [r.id for r in records], task, "file")

    @app.post("/embed", response_model=EmbedResponse, responses=ERROR_RESPONSES)
    async def embed(self, body: EmbedRequest) -> dict[str, Any]:
        """One vector per sequence, for your own downstream models."""
        return await self._embed(body.sequences, [None] * len(body.sequences), body.source, "sequences")

    @app.post("/embed/fasta", response_model=EmbedResponse, responses=ERROR_RESPONSES)
    async def embed_fasta(self, file: Upload, source: Annotated[str, Form()] = "lm") -> dict[str, Any]:
        """Embed every record of a FASTA file."""
        records = read_fasta_upload(await file.read())
        return await self._embed([r.sequence for r in records], [r.id for r in records], source, "file")

    @app.post("/tag", response_model=TagResponse, responses=ERROR_RESPONSES)
    async def tag(self, body: TagRequest) -> dict[str, Any]:
        """Per-nucleotide labels, as runs of the same label."""
        result = await self._tag([body.sequence], [None], body.task, "sequence")
        return {**result["results"][0], "task": body.task, "model": result["model"],
                "batch_size": result["batch_size"]}  # fmt: skip

    @app.post("/tag/fasta", response_model=TagFastaResponse, responses=ERROR_RESPONSES)
    async def tag_fasta(self, file: Upload, task: Annotated[str, Form()] = "coding") -> dict[str, Any]:
        """Tag every record of a FASTA file."""
        records = read_fasta_upload(await file.read())
        return await self._tag([r.sequence for r in records], [r.id for r in records], task, "file")

    @app.post("/variant-effect", response_model=VariantResponse, responses=ERROR_RESPONSES)
    async def variant_effect(self, body: VariantRequest) -> dict[str, Any]:
        """How much each single-base substitution changes the language model's log-likelihood."""
        if not self.tasks["lm"]:
            raise InputError("no language model is served", status=503, code="unavailable")
        check_limits([body.sequence], max_sequences=1, max_bases=self.max_bases, field="sequence")
        sequence = validated([body.sequence], [None], "sequence")[0]
        variants = []
        for i, v in enumerate(body.variants):
            if v.position >= len(sequence):
                raise InputError(f"position {v.position} is outside the sequence (length {len(sequence)})",
                                 field=f"variants.{i}.position")  # fmt: skip
            alt = v.alt.upper().replace("U", "T")
            if alt not in "ACGT":
                raise InputError(f"alt must be one of A C G T (or U), got {v.alt!r}", field=f"variants.{i}.alt")
            if alt == sequence[v.position]:
                raise InputError(f"alt {alt!r} equals the reference base at position {v.position}",
                                 field=f"variants.{i}.alt")  # fmt: skip
            variants.append(Substitution(v.position, alt))
        return await self.call(ScoreVariants(sequence=sequence, variants=variants))


def build_app(args: dict[str, Any]) -> serve.Application:
    """Application builder (``import_path: services.genomics.app:build_app``).

    args: ``tracking_uri``, ``models`` ({"lm": name, "classify": {task: name}, "tag": {task: name}}; an
    empty name or mapping serves none), ``versions`` ({"lm" | "classify:<task>" | "tag:<task>": version}),
    ``max_batch_size``, ``batch_wait_timeout_s``, ``request_timeout_s``, ``max_sequences``, ``max_bases``,
    ``max_tag_bases``, ``num_cpus``.
    """
    models = {**DEFAULT_MODELS, **(args.get("models") or {})}
    unknown = set(models) - set(DEFAULT_MODELS)
    if unknown:
        raise ValueError(f"models names unknown kinds {sorted(unknown)}; expected {sorted(DEFAULT_MODELS)}")
    flat = {"lm": models["lm"]} if models["lm"] else {}
    for kind in ("classify", "tag"):
        flat.update({f"{kind}:{task}": name for task, name in (models[kind] or {}).items()})
    tasks = {"lm": ["lm"] if models["lm"] else [], "classify": sorted(models["classify"] or {}),
             "tag": sorted(models["tag"] or {})}  # fmt: skip
    server = bind_model_server(GenomicsServer, flat, args)
    return GenomicsIngress.options(**ingress_options(args)).bind(
        server, tasks=tasks, request_timeout_s=float(args.get("request_timeout_s", 30)),
        max_sequences=int(args.get("max_sequences", MAX_SEQUENCES)), max_bases=int(args.get("max_bases", MAX_BASES)),
        max_tag_bases=int(args.get("max_tag_bases", MAX_TAG_BASES)),
    )  # fmt: skip
