variable "project_id" {
  description = "ID of the STACKIT project that holds the state bucket. Use a project of its own: object storage credentials reach every bucket of their project, so a backup credential in the cluster's project must not share it with the state."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.project_id))
    error_message = "project_id must be a UUID."
  }
}

variable "region" {
  description = "STACKIT region."
  type        = string
  default     = "eu01"

  validation {
    condition     = can(regex("^[a-z]{2}[0-9]{2}$", var.region))
    error_message = "region must look like eu01."
  }
}

variable "service_account_key_path" {
  description = "Path of the service account key (JSON) the provider authenticates with; null: STACKIT_SERVICE_ACCOUNT_KEY_PATH or the STACKIT credentials file."
  type        = string
  default     = null
}

variable "api_endpoint_overrides" {
  description = "Custom API endpoints, by service (objectstorage, token, service_enablement). For private API gateways and tests; empty for the public STACKIT APIs."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for k, v in var.api_endpoint_overrides :
      contains(["objectstorage", "token", "service_enablement"], k) && can(regex("^https?://", v))
    ])
    error_message = "api_endpoint_overrides keys must be objectstorage, token or service_enablement and values http(s) URLs."
  }
}

variable "bucket_name" {
  description = "Bucket for Terraform state (S3 backend). Bucket names are global: pick a unique one."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 characters of lower-case letters, digits and '-'."
  }
}

variable "credentials_expiration" {
  description = "Expiry of the state access key as an RFC 3339 timestamp; null: it does not expire."
  type        = string
  default     = null

  validation {
    condition     = var.credentials_expiration == null || can(formatdate("YYYY", var.credentials_expiration))
    error_message = "credentials_expiration must be an RFC 3339 timestamp such as 2027-12-31T00:00:00Z."
  }
}
