"""Administrative read-outs of the platform for admins (the dashboard's operator views)."""
