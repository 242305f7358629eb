"""How the report writes numbers, changes, trends and configurations in its sentences and tables."""

from __future__ import annotations

import pandas as pd

# Cost columns as units in a sentence ("from 2 to 40 GFLOPs per image").
COST_UNITS = {
    "gflops_per_image": "GFLOPs per image", "nfe_per_image": "NFEs per image", "seconds_per_image": "seconds per image",
    "total_gflops_per_image": "total GFLOPs per image (denoiser + verifier)",
}


def num(value: float) -> str:
    """Three significant digits, without exponents for large numbers (1,000 rather than 1e+03)."""
    if pd.isna(value):
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def flops(value: float) -> str:
    """A FLOP count in scientific notation: 1.2e13."""
    if pd.isna(value):
        return "n/a"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{float(mantissa):.3g}e{int(exponent)}"


def pct(value: float) -> str:
    """A signed relative change: +12.5%."""
    return "n/a" if pd.isna(value) else f"{value:+.1%}"


def capitalized(text: str) -> str:
    """The first letter upper case, the rest as written ("CLIPScore" stays, "compositional" -> "Compositional")."""
    return text[:1].upper() + text[1:]


def trend(rho: float) -> str:
    """A rank correlation in words."""
    if pd.isna(rho) or rho == 0:
        return "does not change"
    direction = "rises" if rho > 0 else "falls"
    return direction if abs(rho) >= 0.5 else f"{direction} weakly"


def change(before: float, after: float) -> str:
    """'falls from 30 to 10.8', 'rises from ...', or 'stays at 0'."""
    if before == after:
        return f"stays at {num(before)}"
    return f"{'rises' if after > before else 'falls'} from {num(before)} to {num(after)}"


def agreement(fully: bool, partly: bool) -> str:
    """How a finding compares with a paper's: 'agrees with', 'partly agrees with' or 'differs from'."""
    return "agrees with" if fully else "partly agrees with" if partly else "differs from"


def runs(values: pd.Series) -> list[str]:
    """Consecutive duplicates collapsed: a, a, b, a -> a, b, a."""
    return values[values.ne(values.shift())].tolist()


def cost_unit(cost: str) -> str:
    """A cost column as a unit in a sentence."""
    return COST_UNITS.get(cost, cost.replace("_", " "))


def size_label(params: float) -> str:
    """Parameter count the way papers print it: 0.27M, 2.8M, 866M, 2B."""
    if params >= 1e9:
        value, unit = params / 1e9, "B"
    elif params >= 1e5:
        value, unit = params / 1e6, "M"
    else:
        value, unit = params / 1e3, "K"
    return f"{value:.3g}{unit}" if value >= 10 else f"{value:.2g}{unit}"


def search_label(row) -> str:
    """One search configuration: 'random x8 by oracle'."""
    return f"{row['search']} x{int(row['search_budget'])} by {row['verifier']}"


def config_label(row: pd.Series) -> str:
    """One configuration in words: model (size), sampler, steps, guidance and search."""
    label = (f"{row['model']} ({size_label(row['params'])}), {row['sampler']}, {int(row['steps'])} steps, "
             f"cfg {row['guidance']:g}")
    if row["search"] != "none":
        label += f", {row['search']} search x{int(row['search_budget'])} by {row['verifier']}"
    return label
