"""A restored fleet-model owner runs with the current settings (issue 16, finding 1), k excepted."""

from __future__ import annotations

from processors.clustering.owner import ModelOwner
from processors.segmentation import SegmentationConfig
from stream.state.model import follow_settings


def test_a_restored_owner_takes_the_current_settings_but_keeps_k() -> None:
    old = ModelOwner(**SegmentationConfig().owner_kwargs())
    restored = ModelOwner.restore(old.snapshot())
    current = ModelOwner(**SegmentationConfig(
        k=12, model_halflife_updates=500.0, min_seed_samples=64, seeder="river_kmeans", refresh_gain=0.2,
        refresh_every_days=2.0, rename_radius=0.8, small_share=0.05,
    ).owner_kwargs())  # fmt: skip
    changed = follow_settings(restored, current)
    assert set(changed) == {"halflife_updates", "min_seed_samples", "seeder", "refresh_gain", "refresh_every_days",
                            "rename_radius", "small_share"}  # fmt: skip
    assert (restored.halflife_updates, restored.min_seed_samples, restored.seeder) == (500.0, 64, "river_kmeans")
    assert (restored.naming.rename_radius, restored.naming.small_share) == (0.8, 0.05)
    assert restored.k == 10  # the model's clusters are built on it
    assert follow_settings(restored, current) == []
