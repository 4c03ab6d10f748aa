"""Assignment of tracks to detections within one frame.

Cost (as trackpy's subnet linker): the sum of squared displacements of the links
made, plus R² for every track left unlinked. Unambiguous pairs (a track with one
candidate that has no other claimant) are linked in bulk; the rest is split into
connected subnets, each solved exactly by the Hungarian method up to a size cap,
above which a deterministic greedy rule (shortest links first) takes over.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, min_weight_full_bipartite_matching

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Assignment:
    """Links made: ``track[k]`` ↔ ``detection[k]``; ``fallbacks`` counts greedy subnets."""

    track: IntArray
    detection: IntArray
    fallbacks: int
    largest_subnet: int


def _greedy(ti: IntArray, dj: IntArray, d2: FloatArray) -> tuple[IntArray, IntArray]:
    order = np.lexsort((dj, ti, d2))  # shortest first; ties broken by index: deterministic
    used_t: set[int] = set()
    used_d: set[int] = set()
    out_t, out_d = [], []
    for k in order:
        t, d = int(ti[k]), int(dj[k])
        if t not in used_t and d not in used_d:
            used_t.add(t)
            used_d.add(d)
            out_t.append(t)
            out_d.append(d)
    return np.array(out_t, np.int64), np.array(out_d, np.int64)


def _exact(ti: IntArray, dj: IntArray, d2: FloatArray, r2: FloatArray) -> tuple[IntArray, IntArray]:
    """Hungarian method on one subnet; a dummy column per track costs its R²."""
    tracks, t_local = np.unique(ti, return_inverse=True)
    dets, d_local = np.unique(dj, return_inverse=True)
    n, m = len(tracks), len(dets)
    big = float(r2.max()) * 1e6 + 1.0
    cost = np.full((n, m + n), big)
    cost[t_local, d_local] = d2
    cost[np.arange(n), m + np.arange(n)] = r2[tracks]
    rows, cols = linear_sum_assignment(cost)
    real = cols < m
    keep = real & (cost[rows, cols] < big)
    return tracks[rows[keep]], dets[cols[keep]]


def _exact_sparse(
    ti: IntArray, dj: IntArray, d2: FloatArray, r2: FloatArray
) -> tuple[IntArray, IntArray]:
    """All subnets at once: one sparse min-cost perfect matching on an augmented graph.

    Rows are tracks plus one dummy per detection; columns are detections plus one
    dummy per track. Track→own dummy costs R² (unlinked track), detection dummy→
    detection costs 0 (unlinked detection), and dummy→dummy edges mirror the
    candidate pairs so every choice completes to a perfect matching. A constant
    added to every edge keeps the optimum (all perfect matchings have equally many
    edges) and keeps zero costs from reading as missing edges.
    """
    tracks, t_loc = np.unique(ti, return_inverse=True)
    dets, d_loc = np.unique(dj, return_inverse=True)
    n, m = len(tracks), len(dets)
    e = len(ti)
    rows = np.concatenate([t_loc, np.arange(n), n + np.arange(m), n + d_loc])
    cols = np.concatenate([d_loc, m + np.arange(n), np.arange(m), m + t_loc])
    cost = np.concatenate([d2, r2[tracks], np.zeros(m), np.zeros(e)]) + 1.0
    order = np.argsort(rows, kind="stable")  # CSR directly: no COO conversion
    indptr = np.zeros(n + m + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n + m), out=indptr[1:])
    graph = csr_matrix((cost[order], cols[order], indptr), shape=(n + m, n + m))
    match_rows, match_cols = min_weight_full_bipartite_matching(graph)
    real = (match_rows < n) & (match_cols < m)
    return tracks[match_rows[real]], dets[match_cols[real]]


def assign(
    ti: IntArray,
    dj: IntArray,
    d2: FloatArray,
    r2: FloatArray,
    n_tracks: int,
    n_dets: int,
    max_subnet: int,
) -> Assignment:
    """Choose links among candidate pairs.

    Pair k joins track ``ti[k]`` and detection ``dj[k]`` at squared distance ``d2[k]``.

    Parameters
    ----------
    r2
        Per-track cost of staying unlinked (its squared search radius).
    max_subnet
        Subnets with more tracks than this are linked greedily.
    """
    empty = np.zeros(0, np.int64)
    if len(ti) == 0:
        return Assignment(empty, empty, 0, 0)
    n_nodes = n_tracks + n_dets
    # ti is sorted (row-major candidates), so the CSR structure is immediate
    indptr = np.zeros(n_nodes + 1, np.int64)
    indptr[1 : n_tracks + 1] = np.cumsum(np.bincount(ti, minlength=n_tracks))
    indptr[n_tracks + 1 :] = indptr[n_tracks]
    graph = csr_matrix((np.ones(len(ti)), n_tracks + dj, indptr), shape=(n_nodes, n_nodes))
    _, labels = connected_components(graph, directed=True, connection="weak")
    comp = labels[ti]
    n_comp = int(labels.max()) + 1
    # tracks and detections per component (count each node once)
    t_nodes = np.flatnonzero(np.bincount(ti, minlength=n_tracks))
    d_nodes = np.flatnonzero(np.bincount(dj, minlength=n_dets))
    tracks_in = np.bincount(labels[t_nodes], minlength=n_comp)
    dets_in = np.bincount(labels[n_tracks + d_nodes], minlength=n_comp)
    # One track (or one detection) in a component: the optimum is its shortest link,
    # since every other track there stays unlinked at the same cost R².
    star = (tracks_in[comp] == 1) | (dets_in[comp] == 1)
    out_t: list[IntArray] = []
    out_d: list[IntArray] = []
    if star.any():
        sc, st, sd, s2 = comp[star], ti[star], dj[star], d2[star]
        order = np.lexsort((sd, st, s2, sc))  # by component, then shortest, then index
        first = np.ones(len(order), bool)
        first[1:] = sc[order][1:] != sc[order][:-1]
        best = order[first]
        out_t.append(st[best])
        out_d.append(sd[best])
    fallbacks = 0
    largest = int(tracks_in.max()) if n_comp else 0
    rest = ~star
    if rest.any():
        big = rest & (tracks_in[comp] > max_subnet)
        if big.any():
            bc, bt, bd, b2 = comp[big], ti[big], dj[big], d2[big]
            for c in np.unique(bc):
                sel = bc == c
                fallbacks += 1
                a, b = _greedy(bt[sel], bd[sel], b2[sel])
                out_t.append(a)
                out_d.append(b)
        small = rest & ~big
        if small.any():
            a, b = _exact_sparse(ti[small], dj[small], d2[small], r2)
            out_t.append(a)
            out_d.append(b)
    if not out_t:
        return Assignment(empty, empty, fallbacks, largest)
    return Assignment(np.concatenate(out_t), np.concatenate(out_d), fallbacks, largest)
