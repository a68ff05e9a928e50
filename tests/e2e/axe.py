"""axe-core in a Playwright page: the accessibility rules the portal is held to (issue 14).

axe-core comes from the npm registry, pinned by package-lock.json and installed by
``make node_modules/.stamp`` (``npm ci``; `.ci/run` does it before the suite). It is evaluated
through the DevTools protocol (``page.evaluate``), which the page's Content-Security-Policy
does not govern: the policy stays exactly as served, no ``bypass_csp``. Without node_modules the
tests that need it fail, saying the command to run (``make pytest`` runs it first): an
accessibility check that cannot run is not passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

AXE_JS = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING_IMPACTS = ("serious", "critical")


@dataclass(frozen=True)
class Violation:
    rule: str
    impact: str
    help: str
    help_url: str
    nodes: tuple[tuple[str, str, str], ...]  # (CSS target, the element's HTML, what fails)

    def __str__(self) -> str:
        lines = [f"[{self.impact}] {self.rule}: {self.help} ({self.help_url})"]
        for target, html, summary in self.nodes:
            lines.append(f"    at {target}: {html}")
            lines.extend(f"       {line}" for line in summary.splitlines())
        return "\n".join(lines)


def axe_source() -> str:
    """The axe-core script, or a failure saying how to get it."""
    if not AXE_JS.exists():
        pytest.fail(
            f"axe-core is not installed at {AXE_JS}: run `make node_modules/.stamp` (npm ci)"
        )
    return AXE_JS.read_text(encoding="utf-8")


def serious_violations(page, context: str | None = None) -> list[Violation]:
    """Run axe on the page as it is now (or on the elements ``context`` selects) and return the
    violations of impact serious or critical. Every rule axe runs by default takes part (WCAG
    2.x A and AA, and best practices)."""
    source = axe_source()
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # As a function's body: the script defines window.axe; its own value is not needed.
        page.evaluate(f"() => {{ {source}\n }}")
    results = page.evaluate(
        """async (context) => {
            const result = await axe.run(context || document, {resultTypes: ["violations"]});
            return result.violations.map((v) => ({
                rule: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                nodes: v.nodes.map((n) => [n.target.join(" "), n.html, n.failureSummary || ""]),
            }));
        }""",
        context,
    )
    return [
        Violation(
            rule=v["rule"],
            impact=v["impact"],
            help=v["help"],
            help_url=v["helpUrl"],
            nodes=tuple(tuple(node) for node in v["nodes"]),
        )
        for v in results
        if v["impact"] in BLOCKING_IMPACTS
    ]


def assert_accessible(page, where: str, context: str | None = None) -> None:
    violations = serious_violations(page, context)
    assert not violations, f"axe found serious or critical issues on {where}:\n" + "\n".join(
        str(v) for v in violations
    )
