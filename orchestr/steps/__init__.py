"""Step runners: one per step kind, behind the StepRunner protocol in orchestr.steps.base."""
