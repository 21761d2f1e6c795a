"""The built-in Envoy: serves capture folders or generated sites, fakes auth and the Enlighten cloud."""
