# tflint for Strata's modules (infra/test.sh runs it on each module).
# Only the bundled "terraform" ruleset: no OpenStack or STACKIT ruleset is
# published as a Go module, and tflint plugins cannot be downloaded here.
config {
  call_module_type = "local"
}

plugin "terraform" {
  enabled = true
  preset  = "all"
}
