"""JSON Schemas that ship with xenprobe (report.schema.json: `check --json`)."""
