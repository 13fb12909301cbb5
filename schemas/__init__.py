"""The Cap'n Proto schema, shipped inside the proofrace distribution as package data."""
