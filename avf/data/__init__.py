"""The data layer: demo generator, decoding, face cropping, audio, manifests, shards and loaders."""
