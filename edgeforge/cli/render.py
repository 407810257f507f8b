"""Human renderings of library results (the JSON renderings are the results' own ``to_json``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edgeforge.analyze import Analysis
from edgeforge.budget import Verdict
from edgeforge.cli.console import Console
from edgeforge.manifest import Manifest
from edgeforge.target.schema import Target

_UNITS = {"model_flash_bytes": "bytes", "model_ram_bytes": "bytes", "latency_ms": "ms", "max_accuracy_drop": ""}
_LABELS = {"model_flash_bytes": "Flash", "model_ram_bytes": "RAM", "latency_ms": "Latency",
           "max_accuracy_drop": "Acc. drop"}


def human_bytes(n: float) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.2f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{int(n)} B"


def ms_text(x: float) -> str:
    """A latency with meaningful precision: 0.0103 ms stays 0.0103 ms (not "0.0 ms"), 181.94 ms is 181.9 ms."""
    if x >= 10 or x == 0:
        return f"{x:.1f} ms"
    if x >= 1:
        return f"{x:.2f} ms"
    return f"{x:.3g} ms"


def _value(v: Verdict, x: float) -> str:
    if v.budget.endswith("bytes"):
        return human_bytes(x)
    if v.budget == "latency_ms":
        return ms_text(x)
    return f"{x * 100:.2f} pts"


def _basis_tag(basis: str) -> str:
    """"measured", "estimated", ...; for latency estimates also the kernel set the table assumes."""
    kernels = re.search(r", ([a-z0-9-]+) kernels\)", basis)
    return basis.split(":")[0] + (f", {kernels.group(1)} kernels" if kernels else "")


def verdict_lines(c: Console, verdicts: tuple[Verdict, ...]) -> list[str]:
    """PlatformIO-style size bars, one per budget."""
    lines = []
    for v in verdicts:
        label = f"{_LABELS[v.budget]}:".ljust(11)
        if v.value is None:
            lines.append(f"{label}[   n/a    ]  budget {_value(v, v.limit)} — {v.basis}")
            continue
        ratio = v.value / v.limit if v.limit else float("inf")
        filled = min(10, max(0, round(ratio * 10)))
        bar = "=" * filled + " " * (10 - filled)
        status = c.style("ok", "32") if v.fits else c.style(f"OVER by {_value(v, v.excess or 0)}", "1;31")
        lines.append(f"{label}[{bar}] {ratio * 100:6.1f}% ({_value(v, v.value)} of {_value(v, v.limit)}) "
                     f"{status}  [{_basis_tag(v.basis)}]")
    return lines


def search_lines(search: dict[str, Any], out: Path) -> list[str]:
    """The compression search's table of candidates (what report.html plots), the choice marked."""
    if "replayed" in search:
        return [f"recipe:    {search['recipe']} from {search['replayed']}: {search['layers']}"]
    head = f"   {'id':<4} {'flash B':>8} {'RAM B':>8} {'latency':>10} {'accuracy':>9}  {'how':<9} {'fits':<5} recipe"
    lines = ["", f"compression search: {search['candidates']} candidates", head, "   " + "-" * (len(head) - 3)]
    for r in search["table"]:
        mark = "*" if r["id"] == search["chosen"] else (">" if search["closest"] and
                                                         r["id"] == search["closest"]["id"] else " ")
        acc = (f"{r['accuracy'] * 100:8.2f}%" if r["accuracy"] is not None else
               f"{r['sqnr_db']:6.1f} dB" if r["sqnr_db"] is not None else "      n/a")
        lat = f"{r['latency_ms']:8.2f}ms" if r["latency_ms"] is not None else "       n/a"
        fits = "yes" if r["fits"] else "no"
        lines.append(f" {mark} {r['id']:<4} {r['flash_bytes']:>8} {r['ram_bytes']:>8} {lat:>10} {acc:>9}  "
                     f"{r['evaluated']:<9} {fits:<5} {r['summary']}")
    if search["chosen"]:
        binding = search["binding"] or "none (the most accurate candidate fits)"
        saved = search["saved"]
        lines.append(f"chosen:    {search['chosen']} ({search['layers']}); binding budget: {binding}"
                     + (f"; saved {saved['int4_bytes']} B by int4, {saved['sparsity_bytes']} B by sparsity"
                        if "scheme" not in search else ""))
    lines.append(f"report:    {out}/report.html, {out}/report.json"
                 + ("" if "scheme" in search else f", recipe {out}/recipe.toml"))
    return lines


def layers_table(a: Analysis) -> list[str]:
    head = f"{'#':>3}  {'op':<22} {'dtype':<8} {'params':>9} {'MACs':>11} {'act. bytes':>10}  output"
    lines = [head, "-" * len(head)]
    for r in a.layers:
        flag = "" if r.supported else f"   <-- not supported by {a.runtime}"
        lines.append(f"{r.index:>3}  {r.op:<22} {r.dtype:<8} {r.params:>9} {r.macs:>11} {r.activation_bytes:>10}  "
                     f"{list(r.output_shape)}{flag}")
    lines.append(f"     {'total':<22} {'':<8} {a.total_params:>9} {a.total_macs:>11}")
    return lines


def analysis_json(a: Analysis, target: Target | None, verdicts: tuple[Verdict, ...]) -> dict[str, Any]:
    est = a.estimates
    return {
        "target": target.id if target else None,
        "runtime": a.runtime,
        "layers": [r.to_json() for r in a.layers],
        "unsupported_ops": list(a.unsupported_ops),
        "totals": {"params": a.total_params, "macs": a.total_macs, "weight_bytes": a.weight_bytes,
                   "model_bytes": a.model_bytes, "activation_peak_bytes": a.activation_peak_bytes},
        "estimates": None if est is None else {
            "flash_bytes": est.flash_bytes, "flash_basis": est.flash_basis, "ram_bytes": est.ram_bytes,
            "ram_basis": est.ram_basis, "latency_ms": round(est.latency_ms, 3), "latency_basis": est.latency_basis},
        "arena": a.arena.to_json() if a.arena else None,
        "native": a.native,
        "budgets": [v.to_json() for v in verdicts],
        "notes": list(a.notes),
    }


def target_row(t: Target) -> str:
    hw = t.hardware
    return (f"{t.id:<14} {t.kind:<7} {hw['cpu'][:22]:<22} {hw['clock_mhz']:>6} MHz  "
            f"{human_bytes(hw['flash_bytes']):>10} flash {human_bytes(hw['ram_bytes']):>10} RAM  "
            f"{','.join(t.runtimes):<7} {', '.join(t.aliases)}")


def target_details(t: Target) -> list[str]:
    hw, b = t.hardware, t.budget
    feats = ", ".join(k for k, v in hw["features"].items() if v) or "none"
    lines = [f"{t.id} — {t.name}", f"  profile:      {t.source}", f"  kind:         {t.kind}",
             f"  aliases:      {', '.join(t.aliases) or '-'}",
             f"  cpu:          {hw['cpu']} ({hw['arch']}), {hw['cores']} core(s) at {hw['clock_mhz']} MHz; "
             f"features: {feats}",
             f"  memory:       {human_bytes(hw['flash_bytes'])} flash, {human_bytes(hw['ram_bytes'])} RAM",
             f"  budgets:      model flash {human_bytes(b.model_flash_bytes)}, model RAM "
             f"{human_bytes(b.model_ram_bytes)}, latency {b.latency_ms:g} ms, accuracy drop "
             f"{b.max_accuracy_drop * 100:g} pts",
             f"  runtimes:     {', '.join(t.runtimes)}   quantization: {', '.join(t.quantization)}",
             f"  emits:        {', '.join(t.emit)}",
             f"  flash tool:   {t.data['flash']['tool']}"]
    if t.platformio:
        p = t.platformio
        lines.append(f"  platformio:   platform={p['platform']} board={p['board']} framework={p['framework']}")
    if "espidf" in t.data:
        e = t.data["espidf"]
        lines.append(f"  esp-idf:      chip={e['chip']} ({e['idf_version']}), esp-tflite-micro {e['tflite_micro_version']} "
                     f"with {e['kernels']} kernels, flash {e['flash_mode']} {e['flash_freq']}")
    if "serial" in t.data:
        s = t.data["serial"]
        lines.append(f"  serial:       {s['baud']} baud, reset {s['reset']}")
    return lines


def native_lines(manifest: Manifest) -> list[str]:
    """A native build's memory figures as one nested set: the budgeted weights inside all model constants
    inside the linked image (flash), the planned arena inside the image's RAM."""
    n = manifest.native
    assert n is not None
    flash = next((v.value for v in manifest.budgets if v.budget == "model_flash_bytes"), None)
    arm = n["arm"] if n["arm"] and not n["arm"]["link_error"] else None
    parts = []
    if flash is not None:
        parts.append(f"model weights {flash} B (the flash budget's figure)")
    parts.append(f"all model constants {n['const_bytes']} B (weights + requantization parameters)")
    if arm:
        parts.append(f"linked image {arm['flash_bytes']} B (+ kernels, start-up)")
    tflm = f"; TFLM would need {n['tflm_measured_arena_bytes']} B" if n["tflm_measured_arena_bytes"] else ""
    ram = f"arena {n['arena_bytes']} B (lower bound {n['lower_bound_bytes']} B{tflm})"
    if arm:
        ram += f" in {arm['ram_bytes']} B of image RAM incl. {arm['stack']} B stack"
    return [f"flash:     {' <= '.join(parts)}", f"RAM:       {ram}"]


def faster_hint(manifest: Manifest, target_id: str) -> str:
    """What would meet a missed latency budget (the manifest's ``latency_alternatives``, from the build)."""
    alts = manifest.latency_alternatives or ()
    same = [a for a in alts if a["target"] == target_id]
    if same:
        a = same[0]
        return (f"--runtime {a['runtime']} is estimated at {ms_text(a['latency_ms'])} on {target_id}, within the "
                f"latency budget: rebuild with --runtime {a['runtime']}")
    return "estimated within the latency budget: " + ", ".join(
        f"--target {a['target']} ({a['runtime']}, {ms_text(a['latency_ms'])})" for a in alts)
