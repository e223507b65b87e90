"""A run's detections as events: consecutive windows of one label in one recording, all at
or above the threshold and overlapping or touching, merged into one span with its peak.

With windows every 1.5 s, one 2 s call is two or three detections; as an event it is one,
which is what a count of calls, a Raven table or a review should hold.
"""

from __future__ import annotations

from django.db import connection

from annotations.models import Detection, DetectionEvent, InferenceRun, Window

# Windows whose starts and ends meet within this many seconds touch (float rounding of
# starts computed from sample offsets).
TOUCHING_S = 1e-3


def store_detection_events(run: InferenceRun) -> int:
    """Replace the run's events with those of its stored detections; returns their number.

    One statement (gaps and islands): in each (label, recording), ordered by start, a
    window begins a new event when it starts after every earlier window has ended.
    """
    DetectionEvent.objects.filter(run=run).delete()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {DetectionEvent._meta.db_table} "
            "(run_id, label_id, recording_id, start_s, end_s, started_at, peak_score, peak_window_id, windows) "
            "SELECT %(run)s, label_id, recording_id, min(start_s), max(end_s), min(started_at), max(score), "
            "(array_agg(window_id ORDER BY score DESC, start_s))[1], count(*) "
            "FROM (SELECT *, "
            "  sum(begins) OVER (PARTITION BY label_id, recording_id ORDER BY start_s, window_id) AS event "
            "  FROM (SELECT d.window_id, d.label_id, d.score, w.recording_id, w.start_s, w.end_s, w.started_at, "
            "    CASE WHEN w.start_s <= max(w.end_s) OVER (PARTITION BY d.label_id, w.recording_id "
            "      ORDER BY w.start_s, d.window_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + %(touching)s "
            "    THEN 0 ELSE 1 END AS begins "
            f"    FROM {Detection._meta.db_table} d JOIN {Window._meta.db_table} w ON w.id = d.window_id "
            "    WHERE d.run_id = %(run)s) marked) grouped "
            "GROUP BY label_id, recording_id, event",
            {"run": run.pk, "touching": TOUCHING_S},
        )
        return cursor.rowcount
