"""Authentication: bearer JWTs → `Principal`."""
