"""ID/passport photos: document specs (with sources), pipeline, compliance checks, sheets."""
