terraform {
  # use_lockfile in the S3 backend this module serves needs 1.10 or later.
  required_version = ">= 1.10.0"

  required_providers {
    stackit = {
      source  = "stackitcloud/stackit"
      version = "0.93.0"
    }
  }
}
