"""The engine: model loading, image preparation and generation over diffusers. Never imports a front end."""
