# The bucket that holds Strata's Terraform state, and the key that reads and
# writes it. A root module of its own: destroying a cluster must never take
# the state (or the key it is written with) along. See README.md for the
# bootstrap and for what the S3 lock file does and does not guarantee here.

provider "stackit" {
  default_region           = var.region
  service_account_key_path = var.service_account_key_path

  objectstorage_custom_endpoint      = lookup(var.api_endpoint_overrides, "objectstorage", null)
  token_custom_endpoint              = lookup(var.api_endpoint_overrides, "token", null)
  service_enablement_custom_endpoint = lookup(var.api_endpoint_overrides, "service_enablement", null)
}

locals {
  s3_endpoint = "https://object.storage.${var.region}.onstackit.cloud"
}

resource "stackit_objectstorage_bucket" "state" {
  project_id = var.project_id
  name       = var.bucket_name

  # Versioning is switched on through the S3 API after creation (the
  # provider has no attribute for it): see README.md.
  lifecycle {
    prevent_destroy = true
  }
}

resource "stackit_objectstorage_credentials_group" "state" {
  project_id = var.project_id
  name       = "${var.bucket_name}-writers"
  depends_on = [stackit_objectstorage_bucket.state]

  lifecycle {
    prevent_destroy = true
  }
}

resource "stackit_objectstorage_credential" "state" {
  project_id           = var.project_id
  credentials_group_id = stackit_objectstorage_credentials_group.state.credentials_group_id
  expiration_timestamp = var.credentials_expiration

  lifecycle {
    prevent_destroy = true
  }
}
