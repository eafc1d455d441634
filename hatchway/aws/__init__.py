"""The AWS wire layer: JSON 1.1 dispatch, SigV4, error shapes and ARNs."""
