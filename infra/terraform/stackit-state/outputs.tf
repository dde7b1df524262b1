output "bucket" {
  description = "Bucket for Terraform state."
  value       = stackit_objectstorage_bucket.state.name
}

output "s3_endpoint" {
  description = "S3 endpoint of STACKIT object storage in this region."
  value       = local.s3_endpoint
}

output "credentials_group_urn" {
  description = "URN of the credentials group that may write the state (the principal of a bucket policy)."
  value       = stackit_objectstorage_credentials_group.state.urn
}

output "state_credentials" {
  description = "S3 access key pair for the state bucket (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of terraform init)."
  value = {
    access_key_id     = stackit_objectstorage_credential.state.access_key
    secret_access_key = stackit_objectstorage_credential.state.secret_access_key
  }
  sensitive = true
}

output "backend_hcl" {
  description = "Settings of an S3 backend in the state bucket, as a file for terraform init -backend-config=backend.hcl (add a key line)."
  value       = <<-HCL
    bucket                      = "${stackit_objectstorage_bucket.state.name}"
    region                      = "${var.region}"
    endpoints                   = { s3 = "${local.s3_endpoint}" }
    use_path_style              = true
    # A marker only: STACKIT object storage does not honour the conditional
    # write the lock relies on (README.md); serialise applies yourself.
    use_lockfile                = true
    skip_credentials_validation = true
    skip_region_validation      = true
    skip_requesting_account_id  = true
    skip_s3_checksum            = true
  HCL
}
