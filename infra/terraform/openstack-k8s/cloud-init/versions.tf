terraform {
  # Renders text only: no provider is needed.
  required_version = ">= 1.10.0"
}
