"""Names of the clip table's columns that search reads, importable without LanceDB or Arrow
(a cold `story search` answering from a snapshot never imports them)."""

from __future__ import annotations

TEXT_VECTOR = "text_vector"
VISUAL_VECTOR = "visual_vector"
CAPTION_SLOTS = ("caption_shape", "caption_motion", "caption_camera", "caption_ground")
RANKING_COLUMNS = ("motion_probs", "camera_probs", *CAPTION_SLOTS)


def ivf_partitions(rows: int) -> int:
    """IVF partitions of a vector index over `rows` rows: sqrt(rows) / 4 (`index.ivf_pq_config`)."""
    return max(1, round(rows**0.5 / 4))
