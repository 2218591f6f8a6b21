"""Reading Chaos Toolkit journals: verdicts CI can trust (later: JUnit, HTML, baselines)."""
