"""The data layer: dataset adapters, decoding, face cropping, audio, the data stages, manifests, shards, loaders."""
