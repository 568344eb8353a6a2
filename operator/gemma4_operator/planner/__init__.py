"""The planner: spec + cluster facts -> a serving Plan, or a PlanError that explains itself. Pure."""
