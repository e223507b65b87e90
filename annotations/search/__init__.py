"""Query by example: the windows nearest one or more examples by cosine similarity.

One module a job: ``filters`` (what a search may return, as SQL), ``spans`` (the ranges of
window starts that date and hour filters keep), one module per path (``exact``,
``sketch``, ``index``) and ``nearest`` choosing among them, ``ranking`` (examples
combined, negatives, pages), ``hits``, ``spec`` (parameters), ``history`` and
``example_clips``. The names pages, the API and tasks use are importable from here.

A search takes one of three paths (``nearest_window_ids``), and says which:

- **exact**, when the filters leave few windows (up to ``EXACT_SCAN_MAX_WINDOWS``): every
  one is compared with the query;
- **sketch**, when a filter leaves more, up to ``SKETCH_SCAN_MAX_WINDOWS`` (or the project
  has no index yet): every window that passes is ranked by the Hamming distance between
  its sign sketch and the query's, read from the ``one_window_per_start`` index alone
  (about 190 bytes a window instead of a 2 KB table row), and the best
  ``SKETCH_POOL_PER_K`` times k are compared exactly;
- **index**, otherwise: the project's own partial HNSW index (``annotations.search_index``)
  with pgvector's iterative scan under a filter, plus an exact scan of the windows written
  since the index was built.

The exact and sketch paths read windows through spans (``recording_spans``): for each
recording that may hold hits, the ranges of window starts that its date and hour filters
keep, so that a time filter costs range scans of the index rather than a test of every
window of every recording it touches. The index path tests filters on the window row
itself (it carries its project, deployment and start time), so its scan never joins per
candidate.

Several examples are combined either by their **mean** direction (one index query) or
by **best match** (a window scores its highest cosine with any example; one index query
per example, merged). **Negative** examples push results away: a candidate's score
loses ``NEGATIVE_WEIGHT`` times its highest cosine with any negative, so windows that
sound like a rejected example sink. Both re-rank a candidate pool exactly in NumPy.
"""

from annotations.search.exact import EXACT_SCAN_MAX_WINDOWS
from annotations.search.example_clips import MAX_CLIP_BYTES, MAX_REGION_S, request_clip_query, request_region_query
from annotations.search.filters import SearchFilters, WindowConditions, recording_conditions, window_conditions
from annotations.search.history import HistoryEntry, save_search, saved_results_page, search_history
from annotations.search.hits import SearchHit, hits_for, window_start_time
from annotations.search.index import index_sql
from annotations.search.nearest import MAX_K, NearestWindows, SearchPath, nearest_window_ids
from annotations.search.ranking import (
    MAX_EXAMPLES,
    NEGATIVE_WEIGHT,
    PAGE_SIZE,
    SAVED_RESULTS,
    Examples,
    Ranked,
    SearchPage,
    SearchSpec,
    combined_scores,
    examples_for,
    ranked_windows,
    run_search,
)
from annotations.search.sketch import SKETCH_POOL_MIN, SKETCH_POOL_PER_K, SKETCH_SCAN_MAX_WINDOWS
from annotations.search.spec import filters_from_params, spec_from_params, spec_of, spec_params

__all__ = [
    "EXACT_SCAN_MAX_WINDOWS",
    "MAX_CLIP_BYTES",
    "MAX_EXAMPLES",
    "MAX_K",
    "MAX_REGION_S",
    "NEGATIVE_WEIGHT",
    "PAGE_SIZE",
    "SAVED_RESULTS",
    "SKETCH_POOL_MIN",
    "SKETCH_POOL_PER_K",
    "SKETCH_SCAN_MAX_WINDOWS",
    "Examples",
    "HistoryEntry",
    "NearestWindows",
    "Ranked",
    "SearchFilters",
    "SearchHit",
    "SearchPage",
    "SearchPath",
    "SearchSpec",
    "WindowConditions",
    "combined_scores",
    "examples_for",
    "hits_for",
    "index_sql",
    "nearest_window_ids",
    "ranked_windows",
    "recording_conditions",
    "request_clip_query",
    "request_region_query",
    "run_search",
    "save_search",
    "saved_results_page",
    "search_history",
    "filters_from_params",
    "spec_from_params",
    "spec_of",
    "spec_params",
    "window_conditions",
    "window_start_time",
]
