"""Files: uploads (inputs of jobs) and job outputs — /api/v1/files."""
