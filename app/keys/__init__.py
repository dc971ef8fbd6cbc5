"""Key custody: the key file outside the database, loaded once per process."""
