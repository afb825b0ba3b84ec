"""HTTP views: thin flask-smorest blueprints that parse, call domain functions, and dump."""
