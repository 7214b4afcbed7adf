"""The shipped zoo: every model card's headline figure is re-measured from the shipped (float16)
weights on the card's test split, and matches within the card's tolerance; cards are complete; the
whole zoo stays small enough to ship in the repository."""

from __future__ import annotations

import pytest

from pipelines import zoo

ENTRIES = zoo.entries()
CARD_FIELDS = {"name", "pipeline", "preset", "data", "data_arg", "data_licence", "split", "command", "epochs",
               "wall_time_s", "machine", "metrics", "headline", "dtype", "date", "commit"}  # fmt: skip


def test_the_zoo_ships_models_with_complete_cards_under_50_mb():
    assert ENTRIES, "the zoo is empty"
    size = sum(f.stat().st_size for e in ENTRIES for f in e.iterdir())
    assert size < 50e6, f"zoo is {size / 1e6:.1f} MB"
    for entry in ENTRIES:
        card = zoo.read_card(entry)
        assert CARD_FIELDS <= card.keys(), (entry.name, CARD_FIELDS - card.keys())
        assert card["name"] == entry.name and card["headline"]["metric"] in card["metrics"]
        assert (entry / "README.md").exists() and (entry / "model.safetensors").exists()
        # the machine line says how it trained, as the preset parameters that ran record it
        ran = zoo._how_run({f"preset.{k}": v for k, v in card["preset_params"].items()})
        assert card["machine"].endswith(ran), (entry.name, card["machine"], ran)
        assert ("--workers 0" in card["command"]) == (card["preset_params"]["workers"] == "0"), entry.name


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_card_headline_is_remeasured_from_the_shipped_weights(entry):
    card = zoo.read_card(entry)
    if not zoo.shipped_data(card):
        pytest.skip(f"{card['data']}: its licence keeps it out of the repository")
    headline = card["headline"]
    measured = zoo.remeasure(entry)
    print(f"{entry.name}: {headline['metric']} {measured:.6g} (card {headline['value']:.6g})")
    assert measured == pytest.approx(headline["value"], abs=headline["tolerance"])
