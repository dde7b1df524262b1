terraform {
  required_version = ">= 1.10.0"

  required_providers {
    stackit = {
      source  = "stackitcloud/stackit"
      version = "0.93.0"
    }
  }
}
