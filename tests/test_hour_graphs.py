"""The graphs of the bands of the local time of day, on the real PostgreSQL + pgvector."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

import numpy as np
import pytest
from django.db import connection, transaction

from annotations import search_index
from annotations.deployments import create_deployment, create_project, edit_start_time, update_deployment
from annotations.embedding_store import raw_connection, register_embedding_model
from annotations.models import SearchIndex
from annotations.search import SearchFilters, index_sql, nearest_window_ids, window_conditions
from annotations.search import nearest as search_nearest
from annotations.search.filters import WindowConditions
from annotations.search.index import hour_graphs, probe_of_graphs
from annotations.search_index import IndexState, build_search_index, index_state, index_wanted
from annotations.search_reduction import reduce_query
from tests.test_search import exact_top, ids_of, store_windows

pytestmark = pytest.mark.django_db

ZONES = ("America/New_York", "Europe/Berlin")
PER_HOUR = 6  # windows a recording, one recording starting at each local hour of a day


@pytest.fixture
def hours_of_day(make_user, monkeypatch):
    """Two deployments in two zones, each with a recording starting at every local hour
    of 2 March 2026; graphs for deployments and bands of at least 20 windows. Returns
    (project, model, vectors float32 [288, 16], window ids, local hour of each window)."""
    monkeypatch.setattr(search_index, "GRAPH_MIN_WINDOWS", 20)
    rng = np.random.default_rng(5)
    project = create_project(make_user("night-owl"), "Hours")
    model = register_embedding_model("hours-model", "1", 16, 1.0, 1.0, 16_000)
    vectors = (rng.standard_normal((2 * 24 * PER_HOUR, 4)) @ rng.standard_normal((4, 16))).astype(np.float32)
    ids, hours = [], []
    for z, zone in enumerate(ZONES):
        deployment = create_deployment(project, f"D{z}", timezone=zone)
        chunk = vectors[z * 24 * PER_HOUR : (z + 1) * 24 * PER_HOUR]
        ids += store_windows(deployment, model, chunk, per_recording=PER_HOUR)
        for hour, recording in enumerate(deployment.recordings.order_by("pk")):
            edit_start_time(recording, dt.datetime(2026, 3, 2, hour, 0, 30, tzinfo=zoneinfo.ZoneInfo(zone)))
            hours += [hour] * PER_HOUR
    return project, model, vectors, ids, np.array(hours)


def test_each_band_of_hours_gets_a_graph_that_answers_an_hour_filter_as_exactly(hours_of_day):
    project, model, vectors, ids, hours = hours_of_day
    built = build_search_index(project, model)
    assert built.status == "done" and sorted(built.hour_graphs) == [0, 1, 2, 3, 4, 5]
    state = index_state(project, model)
    assert dict(state.local_zones) == dict(project.deployments.values_list("pk", "timezone"))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT window_id, local_second FROM {state.vector_table}")
        seconds = dict(cursor.fetchall())
    within = np.tile(np.arange(PER_HOUR), 48)  # each window starts a second after the one before
    assert [seconds[w] for w in ids] == (hours * 3600 + 30 + within).tolist()  # seconds since local midnight
    for hour_from, hour_to, bands in ((4, 7, [1]), (22, 4, [5, 0]), (6.5, 9, [1, 2])):
        filters = SearchFilters(hour_from=hour_from, hour_to=hour_to)
        where = window_conditions(project, model, filters)
        graphs = hour_graphs(state, where)
        assert len(graphs) == len(bands)
        with transaction.atomic(), raw_connection().cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off")  # as index_rows does
            params = {**where.params, "query": vectors[0], "exclude": [], "k": 10, "pool": 20}
            params["reduced_query"] = reduce_query(vectors[0], state.reduction)
            sql, _ = index_sql(project, model, state, where, None, graphs=graphs)
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        for band in bands:  # each walks its band's graph, and none the project's
            assert f"{state.index_name}_h{band} " in plan, plan
        assert f"{state.index_name} " not in plan, plan
        passing = (hours >= hour_from) & (hours < hour_to) if hour_from < hour_to else (hours >= 22) | (hours < 4)
        for query in (vectors[40], vectors[3] + vectors[200]):
            nearest = nearest_window_ids(project, model, query, 12, filters=filters, exact_scan_max=0)
            exact = [ids[i] for i in np.flatnonzero(passing)[exact_top(vectors[passing], query, 12)]]
            assert nearest.path == "index" and ids_of(nearest) == exact, filters  # not the sketch: a band's graph
        probe = probe_of_graphs(raw_connection(), state, graphs)
        assert set(probe.window_ids.tolist()) == {ids[i] for i in np.flatnonzero(passing)}  # all in the probe


def test_an_hour_filter_walks_bands_only_where_each_has_a_graph_and_the_zones_are_the_ones_it_was_built_in():
    state = IndexState(
        "i", "t", 10, 10, "done", None, places=True, hour_graphs=frozenset({0, 1, 2, 3, 5}), local_zones=((1, "UTC"),)
    )

    def bands(second_from, second_to, zones=((1, "UTC"),), state=state):
        where = WindowConditions([], [], {}, hours=["h"], seconds=(second_from, second_to), zones=zones)
        return [part.where for part in hour_graphs(state, where)]

    s = 3600
    assert bands(4 * s, 8 * s) == ["v.local_second >= 14400 AND v.local_second < 28800"]  # all of band 1
    assert bands(5 * s, 7 * s) == [
        "v.local_second >= 14400 AND v.local_second < 28800 AND v.local_second >= 18000 AND v.local_second < 25200"
    ]
    assert len(bands(4 * s, 15 * s)) == 3  # all of bands 1 and 2, a part of 3
    assert bands(2 * s, 14 * s) == []  # four bands (a part of 0 and 3): the project's graph costs less
    assert bands(15 * s, 18 * s) == []  # band 4 (16-20) has no graph
    assert len(bands(22 * s, 4 * s)) == 2 and len(bands(21 * s, 0)) == 1  # wrapping midnight
    assert bands(4 * s, 8 * s, zones=((1, "Europe/Berlin"),)) == []  # its zone changed since the build
    assert len(bands(4 * s, 8 * s, zones=((1, "UTC"), (2, "Europe/Berlin")))) == 1  # a deployment added since
    assert bands(4 * s, 8 * s, state=dataclasses.replace(state, local_zones=())) == []  # no local times
    sun = WindowConditions([], ["sun"], {}, zones=((1, "UTC"),))
    assert hour_graphs(state, sun) == []


def test_a_new_time_zone_or_start_time_keeps_every_hour_filter_right(hours_of_day, monkeypatch):
    project, model, vectors, ids, hours = hours_of_day
    build_search_index(project, model)
    requested = []
    monkeypatch.setattr(search_index, "request_index_build", lambda *args: requested.append(args))
    # D0's recording of 05:00 now starts at 15:00: its windows join band 3 (12-16).
    d0, d1 = project.deployments.order_by("name")
    moved = d0.recordings.order_by("pk")[5]
    edit_start_time(moved, dt.datetime(2026, 3, 2, 15, 0, 30, tzinfo=zoneinfo.ZoneInfo(ZONES[0])))
    hours = hours.copy()
    hours[5 * PER_HOUR : 6 * PER_HOUR] = 15
    afternoon = SearchFilters(hour_from=12, hour_to=16)
    nearest = nearest_window_ids(project, model, vectors[5 * PER_HOUR], 8, filters=afternoon, exact_scan_max=0)
    passing = (hours >= 12) & (hours < 16)
    exact = [ids[i] for i in np.flatnonzero(passing)[exact_top(vectors[passing], vectors[5 * PER_HOUR], 8)]]
    assert nearest.path == "index" and ids_of(nearest) == exact
    # D1 moves to UTC: its local hours fall an hour earlier, and the bands no longer match them.
    update_deployment(d1, timezone="UTC")
    assert requested == [(project, model)] and index_wanted(project, model)
    where = window_conditions(project, model, afternoon)
    assert hour_graphs(index_state(project, model), where) == []
    hours[24 * PER_HOUR :] -= 1
    hours[hours < 0] += 24
    passing = (hours >= 12) & (hours < 16)
    filtered_graph = {"exact_scan_max": 0, "sketch_scan_max": 0}
    nearest = nearest_window_ids(project, model, vectors[200], 8, filters=afternoon, **filtered_graph)
    exact = [ids[i] for i in np.flatnonzero(passing)[exact_top(vectors[passing], vectors[200], 8)]]
    assert nearest.path == "index" and ids_of(nearest) == exact  # the project's graph, in the new zone
    rebuilt = build_search_index(project, model)
    assert sorted(rebuilt.hour_graphs) == [0, 1, 2, 3, 4, 5] and not index_wanted(project, model)
    assert hour_graphs(index_state(project, model), window_conditions(project, model, afternoon))
    assert SearchIndex.objects.get(pk=rebuilt.pk).local_zones == [f"{d0.pk}={ZONES[0]}", f"{d1.pk}=UTC"]


def test_each_recordings_best_under_an_hour_filter_of_one_band_reads_that_bands_graph(hours_of_day, monkeypatch):
    project, model, vectors, ids, hours = hours_of_day
    build_search_index(project, model)
    real_index_rows = search_nearest.index_rows
    walked = []

    def recording_graphs(*args, **kwargs):
        walked.append([part.where for part in kwargs.get("graphs", ())])
        return real_index_rows(*args, **kwargs)

    monkeypatch.setattr(search_nearest, "index_rows", recording_graphs)
    recording = np.arange(len(ids)) // PER_HOUR  # a recording starts at each hour
    for hour_from, hour_to, band_walked in ((4, 8, True), (22, 4, False)):
        filters = SearchFilters(hour_from=hour_from, hour_to=hour_to, one_per_recording=True)
        query = vectors[4 * PER_HOUR + 2] + 0.5 * vectors[200]
        nearest = nearest_window_ids(project, model, query, 5, filters=filters, exact_scan_max=0, sketch_scan_max=0)
        passing = (hours >= hour_from) & (hours < hour_to) if hour_from < hour_to else (hours >= 22) | (hours < 4)
        best = {}
        for i in np.flatnonzero(passing)[exact_top(vectors[passing], query, int(passing.sum()))]:
            best.setdefault(recording[i], ids[i])  # each recording's first, in order of score
        assert nearest.path == "index" and ids_of(nearest) == list(best.values())[:5], filters
        assert walked[-1] == (["v.local_second >= 14400 AND v.local_second < 28800"] if band_walked else [])
