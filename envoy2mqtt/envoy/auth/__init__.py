"""Legacy digest and token (JWT) authentication, the Enlighten cloud flow and the token store."""
