"""N-1 / N-2 contingency study across hours: DC screening by LODF/PTDF, AC verification.

Plan: the contingency list (single branches, generators, branch pairs, multi-element sets)
is fixed when the run is created and stored in the run directory; chunks are blocks of
hours x blocks of contingencies (contingency-block major, so a worker reuses its LODF
columns across hour blocks).

Per chunk:
1. hourly loads from the profile (or the case's loads as hour 0), generation re-dispatched
   (``proportional`` or ``slack``), DC base flows for all hours at once (one factorisation);
2. DC post-outage flows per (hour, contingency) reduced to the summary row and the worst
   violations (see :mod:`gat_hpc.pf.outages`); islanding outages (bridges, singular pairs)
   are flagged and not screened;
3. AC verification: contingencies whose DC loading exceeds ``ac_threshold_pct`` (all of them
   in ``mode = ac``) are re-solved with AC Newton, warm-started from that hour's base-case AC
   voltages with the base case's Jacobian pattern and KLU symbolic analysis (an opened branch
   keeps its Ybus entries as explicit zeros, so the pattern does not change).

Generator outages: the lost output goes to the island's slack (``balancing = slack``) or is
shared by the remaining in-service generators in proportion to Pmax
(``balancing = participation``); the summary row says which.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gat_hpc.errors import ConvergenceError, InputError
from gat_hpc.network.changes import already_out
from gat_hpc.network.io import read_case
from gat_hpc.pf import outages as O
from gat_hpc.pf.dc import factor_reduced, make_bdc
from gat_hpc.pf.sensitivity import find_bridges, lodf_columns, ptdf_columns
from gat_hpc.pf.topology import bus_types
from gat_hpc.studies.dispatch import hourly_dispatch, pmin_relaxed

RATINGS = {"rateA": "rate_a_mva", "rateB": "rate_b_mva", "rateC": "rate_c_mva"}
KINDS = ("branch", "gen", "pair", "multi")


# ------------------------------------------------------------------ contingency list
def contingency_table(labels, kinds, branches, gens):
    return pa.table({
        "label": pa.array(labels, pa.int64()), "kind": pa.array(kinds, pa.string()),
        "branches": pa.array([list(map(int, b)) for b in branches], pa.list_(pa.int64())),
        "gens": pa.array([list(map(int, g)) for g in gens], pa.list_(pa.int64())),
    })


def table_bytes(table):
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def all_branch_contingencies(net):
    live = np.flatnonzero(net.branch_in_service())
    return contingency_table(net.branch_id[live], ["branch"] * len(live), [[b] for b in live], [[]] * len(live))


def load_profile(path, net):
    """A profile table (Parquet/CSV) or a MATPOWER scenario change table (.m)."""
    if path.lower().endswith(".m"):
        from gat_hpc.network.changes import ScenarioProfile, read_change_table

        return ScenarioProfile(read_change_table(path), net)
    from gat_hpc.studies.profiles import Profile

    return Profile(path, net)


def contingencies_from_source(source, net):
    """'all' or a file (MATPOWER contab .m, or CSV label,branch_id[,gen_id]) -> contingency table."""
    if source in (None, "all"):
        return all_branch_contingencies(net)
    from gat_hpc.network import changes

    if source.lower().endswith(".m"):
        cont = changes.contingencies_from_table(changes.read_change_table(source), net)
    else:
        cont = changes.contingencies_from_csv(source, net)
    labels, kinds, brs, gns = [], [], [], []
    for i in range(len(cont.labels)):
        b = np.asarray(cont.branches[i], dtype=np.int64)
        g = np.asarray(cont.gens[i], dtype=np.int64)
        kind = "branch" if len(b) == 1 and len(g) == 0 else "gen" if len(g) == 1 and len(b) == 0 else \
            "pair" if len(b) == 2 and len(g) == 0 else "multi"
        labels.append(int(cont.labels[i]))
        kinds.append(kind)
        brs.append(b)
        gns.append(g)
    return contingency_table(labels, kinds, brs, gns)


# ------------------------------------------------------------------ the DC model of a network
class DCModel:
    """One factorisation of the DC model, solving the base flows of many hours at once."""

    def __init__(self, net):
        self.net = net
        self.types = bus_types(net)
        self.bbus, self.bf, self.pbusinj, self.pfinj = make_bdc(net)
        self.ref = self.types.ref
        self.solve_idx = np.sort(np.concatenate([self.types.pv, self.types.pq]))
        self.lu = factor_reduced(self.bbus, self.solve_idx, net.source or net.name)
        self.va_ref = net.va[self.ref]

    def flows(self, p_inj):
        """Branch from-end flows (H x M, p.u.) for bus injections ``p_inj`` (n_bus x H, p.u.)."""
        h = p_inj.shape[1]
        va = np.zeros((self.net.n_bus, h))
        va[self.ref] = self.va_ref[:, None]
        if self.lu is not None:
            rhs = p_inj[self.solve_idx] - self.pbusinj[self.solve_idx][:, None] \
                - self.bbus[self.solve_idx][:, self.ref] @ va[self.ref]
            va[self.solve_idx] = self.lu.solve(np.asfortranarray(rhs))
        f = (self.bf @ va).T + self.pfinj[None, :]
        dead = np.zeros(self.net.n_bus, dtype=bool)
        dead[self.types.dead] = True
        f[:, dead[self.net.f_bus] | dead[self.net.t_bus]] = 0.0
        return f


# ------------------------------------------------------------------ the study
class Contingency:
    name = "contingency"
    tables = {"contingencies": ["hour", "contingency_index"],
              "violations": ["hour", "contingency_index", "monitored_branch_id", "source"]}

    # ---------------------------------------------------------- planning
    @staticmethod
    def plan(net, profile, cont, config):
        """Chunks of hours x contingencies. Returns (chunks, contingency table incl. N-2 pairs)."""
        hours_sel = profile.select(config.get("hours")) if profile is not None else np.array([0])
        if hours_sel.size == 0:
            raise InputError("no profile hours in the selected --hours range")
        if config["depth"] == 2:
            cont = Contingency._add_pairs(net, profile, cont, config, hours_sel)
        n_c = cont.num_rows
        if n_c == 0:
            raise InputError("the contingency list is empty")
        ch, cc = config["chunk_hours"], config["chunk_contingencies"]
        chunks = []
        for c0 in range(0, n_c, cc):
            for h0 in range(0, hours_sel.size, ch):
                chunks.append({"ranges": {"hours": [h0, min(h0 + ch, hours_sel.size)],
                                          "contingencies": [c0, min(c0 + cc, n_c)]}})
        return chunks, cont

    @staticmethod
    def _add_pairs(net, profile, cont, config, hours_sel):
        """N-2 candidates: all pairs of the ``n2_candidates`` most severe single branch outages
        at the hour of peak load (pairs already in the list are kept as given)."""
        kinds = cont["kind"].to_pylist()
        single = [i for i, k in enumerate(kinds) if k == "branch"]
        n = int(config.get("n2_candidates", 0))
        if n <= 1 or not single:
            return cont
        ctx = Contingency._base_context(net, profile, config)
        if profile is not None:
            totals = np.array([profile.bus_load(int(k)).real.sum() for k in hours_sel])
            peak = int(hours_sel[int(np.argmax(totals))])
        else:
            peak = 0
        f = Contingency._hour_flows(ctx, np.array([peak]))[0]
        br = np.array([cont["branches"][i].as_py()[0] for i in single])
        lodf, bridge = lodf_columns(net, br)
        post = f[None, :] + (lodf * f[br][None, :]).T  # K x M
        load = np.where(ctx["monitored"], np.abs(post) * 100 / np.where(ctx["rating"] > 0, ctx["rating"], 1), 0)
        sev = np.where(bridge, -np.inf, load.max(axis=1))
        top = np.argsort(-sev, kind="stable")[:n]
        top = np.sort(top[np.isfinite(sev[top])])
        ii, jj = np.triu_indices(len(top), k=1)
        a, b = br[top[ii]], br[top[jj]]
        labels = np.asarray(net.branch_id[a]) * 1_000_000 + net.branch_id[b]
        pairs = contingency_table(labels, ["pair"] * len(a), [[x, y] for x, y in zip(a, b)], [[]] * len(a))
        return pa.concat_tables([cont, pairs])

    # ---------------------------------------------------------- context
    @staticmethod
    def _base_context(net, profile, config):
        rating = getattr(net, RATINGS[config["rating"]]).astype(float)
        live = net.branch_in_service()
        return {"net": net, "profile": profile, "config": config, "dc": DCModel(net),
                "rating": rating, "monitored": live & (rating > 0), "live": live,
                "bridges": find_bridges(net), "cache": {}, "ac_cache": {}}

    def context(self, rd):
        net = read_case(rd.input_path("case"))
        cfg = rd.config
        profile = load_profile(rd.input_path("profile"), net) if "profile" in rd.manifest["inputs"] else None
        ctx = self._base_context(net, profile, cfg)
        ctx["cont"] = pq.read_table(rd.input_path("contingency_list"))
        ctx["hours_sel"] = profile.select(cfg.get("hours")) if profile is not None else np.array([0])
        return ctx

    # ---------------------------------------------------------- hourly injections
    @staticmethod
    def _hour_state(ctx, ks):
        """Loads (n x H complex p.u.), dispatch (G x H p.u.) and (unmet demand (H,), Pmin relaxed (H,)) for
        profile hours ks."""
        net, prof, cfg = ctx["net"], ctx["profile"], ctx["config"]
        if prof is None:
            load = np.repeat(net.bus_load()[:, None], len(ks), axis=1)
            hours = np.zeros(len(ks), dtype=np.int64)
        else:
            load = np.column_stack([prof.bus_load(int(k)) for k in ks])
            hours = prof.hours[ks].astype(np.int64)
            neg = load.real < -1e-12
            if np.any(neg):
                h, b = np.argwhere(neg.T)[0]
                raise InputError(f"{prof.path}: hour {hours[h]}: bus {net.bus_id[b]} has a negative load "
                                 f"({load[b, h].real * net.base_mva:.3f} MW)")
        shunt_g = net.bus_shunt().real
        demand = load.real.sum(axis=0) + shunt_g.sum()
        pg, unmet = hourly_dispatch(net, cfg["dispatch"], demand)
        relaxed = pmin_relaxed(net.pg, net.pmin, net.pmax, net.gen_status, demand) \
            if cfg["dispatch"] == "proportional" else np.zeros(len(ks), dtype=bool)
        return hours, load, pg, (unmet, relaxed)

    @staticmethod
    def _injections(ctx, load, pg):
        net = ctx["net"]
        gen = np.zeros((net.n_bus, pg.shape[1]))
        np.add.at(gen, net.gen_bus, np.where(net.gen_status[:, None], pg, 0.0))
        return gen - load.real - net.bus_shunt().real[:, None]

    @staticmethod
    def _hour_flows(ctx, ks):
        _, load, pg, _ = Contingency._hour_state(ctx, ks)
        return Contingency._ctx_flows(ctx, load, pg)

    @staticmethod
    def _ctx_flows(ctx, load, pg):
        return ctx["dc"].flows(Contingency._injections(ctx, load, pg))

    # ---------------------------------------------------------- run one chunk
    def run_chunk(self, ctx, spec):
        t0 = time.perf_counter()
        net, cfg = ctx["net"], ctx["config"]
        base = net.base_mva
        h0, h1 = spec.ranges["hours"]
        c0, c1 = spec.ranges["contingencies"]
        ks = ctx["hours_sel"][h0:h1]
        hours, load, pg, unmet = self._hour_state(ctx, ks)
        f_mw = self._ctx_flows(ctx, load, pg) * base  # H x M
        cont = ctx["cont"].slice(c0, c1 - c0)
        kinds = np.array(cont["kind"].to_pylist(), dtype=object)
        brs = cont["branches"].to_pylist()
        gns = cont["gens"].to_pylist()
        H, K = len(hours), cont.num_rows
        red = _empty_reduction(H, K)
        islanding = np.zeros(K, dtype=bool)
        vio = []
        rating, mon = ctx["rating"], ctx["monitored"]
        thr = float(cfg["threshold_pct"])
        top = int(cfg.get("violations_per_contingency", 5))

        def put(sel, r):
            for name in ("max_loading_pct", "argmax_loading", "n_violations", "max_abs_flow_mw",
                         "argmax_abs_flow", "max_flow_mw", "min_flow_mw"):
                getattr(red, name)[:, sel] = getattr(r, name)
            if r.violations[0].size:
                vh, vk, vm, vf, vl = r.violations
                vio.append((vh, sel[vk.astype(np.int64)], vm, vf, vl))

        # single branch outages
        sb = np.flatnonzero(kinds == "branch")
        if sb.size:
            out = np.array([brs[i][0] for i in sb], dtype=np.int64)
            lodf, bridge = self._lodf(ctx, out)
            islanding[sb[bridge]] = True
            ok = ~bridge
            if np.any(ok) and cfg.get("device", "cpu") != "cpu":
                put(sb[ok], self._screen_device(ctx, f_mw, lodf[:, ok], out[ok], thr, top))
            elif np.any(ok):
                r = O.screen(f_mw, O.BranchOutageDeltas(f_mw, lodf[:, ok], out[ok]), rating, mon, thr, top)
                put(sb[ok], r)
        # branch pairs
        sp_ = np.flatnonzero(kinds == "pair")
        if sp_.size:
            kk = np.array([brs[i][0] for i in sp_], dtype=np.int64)
            ll = np.array([brs[i][1] for i in sp_], dtype=np.int64)
            lk, bk = self._lodf(ctx, kk)
            lw, bl = self._lodf(ctx, ll)
            d = O.PairOutageDeltas(f_mw, lk, lw, kk, ll)
            isl = d.islanding() | (bk & bl & (kk == ll))
            islanding[sp_[isl]] = True
            ok = ~isl
            if np.any(ok):
                d = O.PairOutageDeltas(f_mw, lk[:, ok], lw[:, ok], kk[ok], ll[ok])
                put(sp_[ok], O.screen(f_mw, d, rating, mon, thr, top))
        # generator outages
        sg = np.flatnonzero(kinds == "gen")
        if sg.size:
            g = np.array([gns[i][0] for i in sg], dtype=np.int64)
            dist = self._gen_distribution(ctx, g)
            pg_out = np.where(net.gen_status[g][None, :], pg[g].T, 0.0) * base  # H x G
            put(sg, O.screen(f_mw, O.GenOutageDeltas(pg_out, dist), rating, mon, thr, top))
        # anything else: one set at a time
        for i in np.flatnonzero(kinds == "multi"):
            r = self._screen_multi(ctx, f_mw, pg, brs[i], gns[i], rating, mon, thr, top)
            if r is None:
                islanding[i] = True
            else:
                put(np.array([i]), r)
        # AC verification
        ac = _empty_ac(H, K)
        ac_thr = cfg.get("ac_threshold_pct")
        if cfg["mode"] == "ac" or ac_thr is not None:
            want = np.ones((H, K), dtype=bool) if cfg["mode"] == "ac" else red.max_loading_pct > float(ac_thr)
            want &= ~islanding[None, :]
            if np.any(want):
                vio_ac = self._ac_verify(ctx, hours, load, pg, want, brs, gns, ac, thr, top)
                vio.extend(vio_ac)
        tables = self._tables(ctx, hours, unmet, cont, kinds, brs, gns, red, islanding, ac, vio, c0, f_mw)
        metrics = {"hours": H, "contingencies": K, "post_outage_flows": int(H * K * net.n_branch),
                   "ac_solves": int(ac["verified"].sum()), "seconds": time.perf_counter() - t0}
        if cfg.get("device", "cpu") != "cpu":
            metrics["device"] = cfg["device"]
            metrics["device_screen_s"] = float(sum(ctx.pop("device_seconds", [])))
        return tables, metrics

    # ---------------------------------------------------------- helpers
    @staticmethod
    def _lodf(ctx, out):
        key = ("lodf", out.tobytes())
        cache = ctx["cache"]
        if key not in cache:
            if len(cache) > 8:
                cache.clear()
            cache[key] = lodf_columns(ctx["net"], out)
        return cache[key]

    @staticmethod
    def _screen_device(ctx, f_mw, lodf, out, thr, top):
        """Single-branch outages on the GPU (``device = gpu``; ``twin`` runs the kernel's numpy twin).

        The LODF is uploaded (scaled and tiled) once per set of outages and reused by the chunks
        of other hours that this process runs."""
        cfg = ctx["config"]
        dtype = np.dtype(cfg.get("precision", "float32"))
        device = "gpu" if cfg["device"] == "gpu" else "cpu"
        key = ("screen", out.tobytes(), dtype.str, device)
        cache = ctx["cache"]
        red, cache[key] = O.screen_branch_outages_lodf(f_mw, lodf, out, ctx["rating"], ctx["monitored"], thr, top,
                                                       device=device, dtype=dtype, screen=cache.get(key))
        ctx.setdefault("device_seconds", []).append(red.timings.get("total", 0.0))
        return red

    @staticmethod
    def _gen_distribution(ctx, g):
        """D[:, j]: flow change per p.u. lost at generator g[j] (PTDF at its bus minus its balancing)."""
        net, cfg = ctx["net"], ctx["config"]
        cache = ctx["cache"]
        if "ptdf_gen" not in cache:
            cache["ptdf_gen"] = ptdf_columns(net, net.gen_bus)  # M x n_gen, slack-referenced
        ptdf = cache["ptdf_gen"]
        d = ptdf[:, g].copy()
        if cfg["balancing"] == "participation":
            on = net.gen_status.copy()
            w = np.where(on, np.maximum(net.pmax, 0.0), 0.0)
            total = ptdf @ w  # M
            rest = w.sum() - w[g]
            with np.errstate(divide="ignore", invalid="ignore"):
                bal = (total[:, None] - ptdf[:, g] * w[g][None, :]) / np.where(rest > 0, rest, np.inf)[None, :]
            d -= bal
        return d

    def _screen_multi(self, ctx, f_mw, pg, br, gn, rating, mon, thr, top):
        net, base = ctx["net"], ctx["net"].base_mva
        f = f_mw.copy()
        if gn:
            gi = np.asarray(gn)
            dist = self._gen_distribution(ctx, gi)
            f -= (np.where(net.gen_status[gi][None, :], pg[gi].T, 0.0) * base) @ dist.T
        if br:
            bi = np.asarray(br)
            lodf, bridge = lodf_columns(net, bi)
            if np.any(bridge):
                return None
            post = O.multi_outage_flows(f, lodf, bi)
            if post is None:
                return None
        else:
            post = f

        class _Fixed:
            n = 1

            def __call__(self, hs, ks):
                return (post[hs] - f_mw[hs])[:, None, :]
        return O.screen(f_mw, _Fixed(), rating, mon, thr, top)

    def _ac_verify(self, ctx, hours, load, pg, want, brs, gns, ac, thr, top):
        """AC re-solves of the wanted (hour, contingency) cells; fills ``ac`` and returns AC violations.

        Each hour's base case is solved once; every contingency of that hour then starts from
        its voltages. A branch outage updates the base Ybus in place of a rebuild (same
        sparsity pattern), so the Jacobian map and KLU's symbolic analysis of the base case
        serve every outage; bus roles are recomputed only when they can change (several
        branches out, or a bus losing its last generator).
        """
        from gat_hpc.pf.newton import JacobianMap, newton
        from gat_hpc.pf.ybus import branch_admittances, branch_entry_positions, outage_ybus

        net, cfg = ctx["net"], ctx["config"]
        acc = ctx["ac_cache"]
        if "work" not in acc:
            from gat_hpc.studies.pf_hourly import per_bus_network

            acc["work"] = per_bus_network(net)
            acc["solve"] = {}
        work = acc["work"]
        rating, mon = ctx["rating"], ctx["monitored"]
        inv_rating = np.where(mon, 100.0 / np.where(rating > 0, rating, 1.0), 0.0)
        vio = []
        tol, max_iter = cfg["tol"], cfg["max_iter"]
        for h in np.flatnonzero(want.any(axis=1)):
            work.load_p, work.load_q = load[:, h].real.copy(), load[:, h].imag.copy()
            work.pg = pg[:, h].copy()
            work.branch_status = net.branch_status.copy()
            work.gen_status = net.gen_status.copy()
            cache = acc["solve"]
            try:
                res = self._ac_base(ctx, work, cache)
            except ConvergenceError:
                ac["base_failed"][h, :] = True
                continue
            acc["V"] = res.V
            pg_h = work.pg.copy()
            jmap, lu, types0 = cache["jmap"], cache["lu"], cache["types"]
            ybus0, yf0, yt0 = cache["ybus"], cache["yf"], cache["yt"]
            _, base_loading = self._ac_flows(net, res.V, yf0, yt0, inv_rating)  # before any outage
            if "pos" not in acc:
                acc["pos"] = branch_entry_positions(ybus0, net)
                acc["adm"] = branch_admittances(net)
            gen_count = np.bincount(net.gen_bus[net.gen_status], minlength=net.n_bus)
            sbus0 = work.bus_gen() - work.bus_load()  # branch outages keep the hour's injections
            for k in np.flatnonzero(want[h]):
                br, gi = np.asarray(brs[k], dtype=np.int64), np.asarray(gns[k], dtype=np.int64)
                if gi.size:
                    work.pg = pg_h.copy()
                    work.gen_status = net.gen_status.copy()
                    lost = float(np.where(net.gen_status[gi], work.pg[gi], 0.0).sum())
                    work.gen_status[gi] = False
                    if cfg["balancing"] == "participation":
                        w = np.where(work.gen_status, np.maximum(net.pmax, 0.0), 0.0)
                        if w.sum() > 0:
                            work.pg = work.pg + lost * w / w.sum()
                    sbus = work.bus_gen() - work.bus_load()
                else:
                    sbus = sbus0
                roles_change = br.size > 1 or (gi.size and np.any(
                    np.bincount(net.gen_bus[gi[net.gen_status[gi]]], minlength=net.n_bus)[net.gen_bus[gi]]
                    >= gen_count[net.gen_bus[gi]]))
                types = types0
                if roles_change:
                    work.branch_status = net.branch_status.copy()
                    work.branch_status[br] = False
                    try:
                        types = bus_types(work)
                    except InputError:
                        ac["islanding"][h, k] = True
                        continue
                    if types.n_islands != types0.n_islands or len(types.dead) != len(types0.dead):
                        ac["islanding"][h, k] = True
                        continue
                ybus = outage_ybus(ybus0, acc["pos"], acc["adm"], br) if br.size else ybus0
                if types is types0 or (np.array_equal(types.pv, types0.pv) and np.array_equal(types.pq, types0.pq)):
                    jm = jmap.with_ybus(ybus) if br.size else jmap
                else:
                    jm = JacobianMap(ybus, types.pv, types.pq)
                try:
                    r = newton(ybus, sbus, res.V, types.pv, types.pq, tol=tol, max_iter=max_iter, solver=lu, jmap=jm)
                except ConvergenceError:
                    r = None
                ac["verified"][h, k] = True
                if r is None or not r.converged:
                    ac["converged"][h, k] = False
                    continue
                ac["converged"][h, k] = True
                sf, loading = self._ac_flows(net, r.V, yf0, yt0, inv_rating, br)
                m = int(np.argmax(loading))
                ac["max_loading_pct"][h, k] = loading[m]
                ac["argmax"][h, k] = m
                over = np.flatnonzero(loading > thr)
                if over.size:
                    sel = over[np.argsort(-loading[over])[:top]]
                    vio.append((np.full(sel.size, h), np.full(sel.size, k), sel, sf.real[sel], loading[sel], "ac",
                                base_loading[sel]))
                ac["n_violations"][h, k] = over.size
            work.branch_status = net.branch_status.copy()
            work.gen_status = net.gen_status.copy()
        return vio

    @staticmethod
    def _ac_flows(net, V, yf, yt, inv_rating, out=None):
        """(S_from in MVA, loading in %: max of |S_from|, |S_to| over the rating) of every branch
        at voltages V; the branches ``out`` (indices) carry nothing."""
        sf = V[net.f_bus] * np.conj(yf @ V) * net.base_mva
        st = V[net.t_bus] * np.conj(yt @ V) * net.base_mva
        if out is not None:
            sf[out] = 0.0
            st[out] = 0.0
        return sf, np.maximum(np.abs(sf), np.abs(st)) * inv_rating

    @staticmethod
    def _ac_base(ctx, work, cache, rounds=4):
        """Base-case AC solve of one hour, with a dispatch that also covers the AC losses.

        The DC screen dispatches the lossless demand; in AC the slack would then pick up all
        the losses (GW on large cases) and the solve can land on a far-off operating point.
        With ``dispatch = proportional`` the hour's generation starts from the case's ratio of
        generation to demand (losses included) and the losses each solve finds are shared in
        proportion until the slack's extra output is below 1 MW. Every round starts from the
        same voltages (the previous hour's or the case's), never from a stressed solution.
        """
        from gat_hpc.pf.ac import solve_ac

        net, cfg = ctx["net"], ctx["config"]
        v_start = ctx["ac_cache"].get("V")
        if cfg["dispatch"] == "proportional":
            case_gen = float(np.where(net.gen_status, net.pg, 0.0).sum())
            case_demand = float(net.bus_load().real.sum() + net.bus_shunt().real.sum())
            demand = float(work.load_p.sum() + net.bus_shunt().real.sum())
            if case_gen > 0 and case_demand > 0:
                work.pg = hourly_dispatch(net, "proportional", demand * case_gen / case_demand)[0][:, 0]
        res = None
        for _ in range(rounds):
            res = solve_ac(work, tol=cfg["tol"], max_iter=cfg["max_iter"], init="case", v0=v_start, cache=cache)
            extra = float(res.pg.sum() - np.where(work.gen_status, work.pg, 0.0).sum())
            if cfg["dispatch"] != "proportional" or abs(extra) * net.base_mva < 1.0:
                break
            total = float(np.where(work.gen_status, work.pg, 0.0).sum()) + extra
            work.pg = hourly_dispatch(work, "proportional", total)[0][:, 0]
        return res

    def _tables(self, ctx, hours, unmet, cont, kinds, brs, gns, red, islanding, ac, vio, c0, f_mw):
        net, cfg = ctx["net"], ctx["config"]
        H, K = red.max_loading_pct.shape
        rating = ctx["rating"]
        hh = np.repeat(hours, K)
        kk = np.tile(np.arange(K), H)
        isl = np.tile(islanding, H) | ac["islanding"].ravel()
        screened = ~np.tile(islanding, H)
        first_branch = np.array([net.branch_id[b[0]] if b else -1 for b in brs], dtype=np.int64)
        second_branch = np.array([net.branch_id[b[1]] if len(b) > 1 else -1 for b in brs], dtype=np.int64)
        gen_id = np.array([net.gen_id[g[0]] if g else -1 for g in gns], dtype=np.int64)
        # a contingency naming an element the case already has out of service changes
        # nothing (or less than it says): flagged, so that its rows are not read as screened
        already = already_out(net, brs, gns)
        argl = red.argmax_loading.ravel()
        arga = red.argmax_abs_flow.ravel()
        mxl = red.max_loading_pct.ravel()
        violated = (red.n_violations.ravel() > 0) & screened
        viol_branch = np.where(violated, net.branch_id[np.clip(argl, 0, None)], -1)
        lim = rating[np.clip(argl, 0, None)]
        # the worst violation in MW: |flow| - limit on the most loaded branch
        worst_flow = np.where(violated, mxl, 0.0) * lim / 100.0

        def opt(values, valid, typ=pa.float64()):
            return pa.array(values, typ, mask=~valid)

        ac_v = ac["verified"].ravel()
        ac_ok = ac["converged"].ravel() & ac_v
        t = pa.table({
            "hour": pa.array(hh, pa.int64()),
            "contingency_index": pa.array(c0 + kk, pa.int64()),
            "contingency_label": pa.array(np.tile(np.asarray(cont["label"].to_numpy()), H), pa.int64()),
            "contingency_kind": pa.array(np.tile(kinds.astype(str), H), pa.string()),
            "contingency_branch_id": opt(np.tile(first_branch, H), np.tile(first_branch >= 0, H), pa.int64()),
            "contingency_branch_id2": opt(np.tile(second_branch, H), np.tile(second_branch >= 0, H), pa.int64()),
            "contingency_gen_id": opt(np.tile(gen_id, H), np.tile(gen_id >= 0, H), pa.int64()),
            "branch_count": pa.array(np.full(H * K, int(ctx["monitored"].sum())), pa.int32()),
            # the GPU screen leaves the flow extremes out (NaN, branch -1): nulls
            "max_flow_branch_id": opt(net.branch_id[np.clip(arga, 0, None)], screened & (arga >= 0), pa.int64()),
            "max_abs_flow_mw": opt(red.max_abs_flow_mw.ravel(), screened & np.isfinite(red.max_abs_flow_mw.ravel())),
            "max_flow_mw": opt(red.max_flow_mw.ravel(), screened & np.isfinite(red.max_flow_mw.ravel())),
            "min_flow_mw": opt(red.min_flow_mw.ravel(), screened & np.isfinite(red.min_flow_mw.ravel())),
            "max_loading_pct": opt(mxl, screened & np.isfinite(mxl)),
            "violation_count": pa.array(np.where(screened, red.n_violations.ravel(), 0), pa.int32()),
            "violated": pa.array(violated, pa.bool_()),
            "violation_branch_id": opt(viol_branch, violated, pa.int64()),
            "max_violation_mw": opt(worst_flow - lim, violated),
            "violation_limit_mw": opt(lim, violated),
            "islanding": pa.array(isl, pa.bool_()),
            "already_out": pa.array(np.tile(already, H), pa.bool_()),
            "ac_verified": pa.array(ac_v, pa.bool_()),
            "ac_converged": opt(ac_ok, ac_v, pa.bool_()),
            "ac_max_loading_pct": opt(ac["max_loading_pct"].ravel(), ac_ok),
            "ac_violation_count": opt(ac["n_violations"].ravel(), ac_ok, pa.int32()),
            "unserved_by_dispatch_mw": pa.array(np.repeat(unmet[0] * net.base_mva, K), pa.float64()),
            "dispatch_pmin_relaxed": pa.array(np.repeat(unmet[1], K), pa.bool_()),
            "balancing": pa.array(np.where(np.tile(kinds, H) == "gen", cfg["balancing"], ""), pa.string()),
        })
        parts = []
        for item in vio:
            vh, vk, vm, vf, vl = item[:5]
            src = item[5] if len(item) > 5 else "dc"
            vh = np.asarray(vh, dtype=np.int64)
            vk = np.asarray(vk, dtype=np.int64)
            vm = np.asarray(vm, dtype=np.int64)
            # the monitored branch before the outage, same hour, same model (DC or AC)
            before = item[6] if len(item) > 6 else 100.0 * np.abs(f_mw[vh, vm]) / rating[vm]
            parts.append(pa.table({
                "hour": pa.array(hours[vh], pa.int64()),
                "contingency_index": pa.array(c0 + vk, pa.int64()),
                "contingency_label": pa.array(np.asarray(cont["label"].to_numpy())[vk], pa.int64()),
                "monitored_branch_id": pa.array(net.branch_id[vm], pa.int64()),
                "flow_mw": pa.array(np.asarray(vf, dtype=float), pa.float64()),
                "limit_mw": pa.array(rating[vm], pa.float64()),
                "loading_pct": pa.array(np.asarray(vl, dtype=float), pa.float64()),
                "base_loading_pct": pa.array(np.asarray(before, dtype=float), pa.float64()),
                "source": pa.array([src] * len(vh), pa.string()),
            }))
        v = pa.concat_tables(parts) if parts else pa.table({
            "hour": pa.array([], pa.int64()), "contingency_index": pa.array([], pa.int64()),
            "contingency_label": pa.array([], pa.int64()), "monitored_branch_id": pa.array([], pa.int64()),
            "flow_mw": pa.array([], pa.float64()), "limit_mw": pa.array([], pa.float64()),
            "loading_pct": pa.array([], pa.float64()), "base_loading_pct": pa.array([], pa.float64()),
            "source": pa.array([], pa.string())})
        return {"contingencies": t, "violations": v}

    # ---------------------------------------------------------- reduce
    def extra_outputs(self, rd, paths, outdir):
        """reduce/top_violations.parquet: the worst rows, AC values where the outage was verified.

        Works in Arrow (no Python objects per row): a year of N-1 has tens of millions of rows.
        """
        import os

        import pyarrow.compute as pc

        if "violations" not in paths:
            return {}
        top_n = int(rd.config.get("top", 100))
        out = os.path.join(outdir, "top_violations.parquet")
        c = pq.read_table(paths["contingencies"], columns=["hour", "contingency_index", "ac_verified"],
                          filters=[("ac_verified", "=", True)])
        vkey = pc.add(pc.multiply(c["hour"], 1 << 32), c["contingency_index"]) if c.num_rows else None
        order = [("loading_pct", "descending"), ("hour", "ascending"), ("contingency_index", "ascending"),
                 ("monitored_branch_id", "ascending")]
        best = []
        # stream the violations, keeping the running top N: tens of millions of rows never sit in memory
        for batch in pq.ParquetFile(paths["violations"]).iter_batches(batch_size=1 << 20):
            b = pa.Table.from_batches([batch])
            if vkey is not None:
                # AC rows of verified (hour, contingency) pairs, DC rows of the others
                key = pc.add(pc.multiply(b["hour"], 1 << 32), b["contingency_index"])
                b = b.filter(pc.equal(pc.is_in(key, value_set=vkey), pc.equal(b["source"], "ac")))
            else:
                b = b.filter(pc.equal(b["source"], "dc"))
            best.append(b.sort_by(order).slice(0, top_n))
            if len(best) > 8:
                best = [pa.concat_tables(best).sort_by(order).slice(0, top_n)]
        v = pa.concat_tables(best).sort_by(order).slice(0, top_n) if best else \
            pq.read_schema(paths["violations"]).empty_table()
        tv = pa.table({"hour": v["hour"], "contingency_label": v["contingency_label"],
                       "contingency_index": v["contingency_index"], "monitored_branch_id": v["monitored_branch_id"],
                       "flow_mw": v["flow_mw"], "limit_mw": v["limit_mw"], "loading_pct": v["loading_pct"],
                       "base_loading_pct": v["base_loading_pct"], "ac_verified": pc.equal(v["source"], "ac")})
        pq.write_table(tv, out)
        return {"top_violations": out}

    def summarize(self, rd, paths):
        import pyarrow.compute as pc

        out = {"mode": rd.config["mode"], "balancing": rd.config["balancing"], "dispatch": rd.config["dispatch"]}
        pf = pq.ParquetFile(paths["contingencies"])
        n = viol = isl = acv = 0
        hours, conts = set(), set()
        for batch in pf.iter_batches(columns=["hour", "contingency_index", "violated", "islanding", "ac_verified"],
                                     batch_size=1 << 20):
            n += batch.num_rows
            viol += pc.sum(batch["violated"]).as_py() or 0
            isl += pc.sum(batch["islanding"]).as_py() or 0
            acv += pc.sum(batch["ac_verified"]).as_py() or 0
            hours.update(pc.unique(batch["hour"]).to_pylist())
            conts.update(pc.unique(batch["contingency_index"]).to_pylist())
        out.update(hour_contingency_rows=n, hours=len(hours), contingencies=len(conts), violated_rows=int(viol),
                   islanding_rows=int(isl), ac_verified_rows=int(acv))
        if "top_violations" in paths:
            out["worst"] = pq.read_table(paths["top_violations"]).slice(0, 10).to_pylist()
        return out


def _empty_reduction(H, K):
    z = np.zeros((H, K))
    zi = np.zeros((H, K), dtype=np.int64)
    return O.Reduction(z.copy(), zi.copy(), zi.copy(), z.copy(), zi.copy(), z.copy(), z.copy(), ())


def _empty_ac(H, K):
    return {"verified": np.zeros((H, K), bool), "converged": np.zeros((H, K), bool),
            "islanding": np.zeros((H, K), bool), "base_failed": np.zeros((H, K), bool),
            "max_loading_pct": np.full((H, K), np.nan), "argmax": np.full((H, K), -1, np.int64),
            "n_violations": np.zeros((H, K), np.int64)}
