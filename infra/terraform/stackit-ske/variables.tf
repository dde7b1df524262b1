# --- STACKIT access ------------------------------------------------------------------------

variable "project_id" {
  description = "ID of the STACKIT project that holds the cluster, the DNS zone and the buckets."
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
  description = "Custom API endpoints, by service (ske, dns, objectstorage, iaas, token, resourcemanager, service_account, authorization, service_enablement). For private API gateways and tests; empty for the public STACKIT APIs."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for k, v in var.api_endpoint_overrides :
      contains(["ske", "dns", "objectstorage", "iaas", "token", "resourcemanager", "service_account", "authorization", "service_enablement"], k)
      && can(regex("^https?://", v))
    ])
    error_message = "api_endpoint_overrides keys must be known services and values http(s) URLs."
  }
}

# --- Cluster --------------------------------------------------------------------------------

variable "cluster_name" {
  description = "Name of the SKE cluster (SKE allows at most 11 characters)."
  type        = string
  default     = "strata"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,10}$", var.cluster_name))
    error_message = "cluster_name must be 1-11 characters of lower-case letters, digits and '-', starting with a letter."
  }
}

variable "kubernetes_version_min" {
  description = "Kubernetes minor (or exact version) of the cluster. SKE runs the newest patch release of this minor, not the newest minor: a minor upgrade is a reviewed change of this value (docs/terraform.md, \"Kubernetes versions\"). With maintenance_window.enable_kubernetes_version_updates SKE applies patch releases, and forced updates when a minor reaches end of life, in the window."
  type        = string
  default     = "1.35"

  validation {
    condition     = can(regex("^1\\.[0-9]+(\\.[0-9]+)?$", var.kubernetes_version_min))
    error_message = "kubernetes_version_min must look like 1.35 or 1.35.2."
  }
  validation {
    # 1.34 reached end of life upstream in October 2026; raise this floor
    # when the next minor does.
    condition     = try(tonumber(split(".", var.kubernetes_version_min)[1]) >= 35, false)
    error_message = "kubernetes_version_min must be 1.35 or later (older minors are past their end of life)."
  }
}

variable "node_pools" {
  description = "Worker node pools. SKE runs the control plane itself; these are the nodes for workloads."
  type = list(object({
    name               = string
    machine_type       = string
    minimum            = number
    maximum            = number
    availability_zones = list(string)
    os_name            = optional(string, "flatcar")
    os_version_min     = optional(string)
    volume_size        = optional(number, 50)
    volume_type        = optional(string)
    labels             = optional(map(string), {})
    taints = optional(list(object({
      key    = string
      value  = optional(string)
      effect = string
    })), [])
  }))
  default = [{
    name               = "default"
    machine_type       = "c1.2"
    minimum            = 2
    maximum            = 3
    availability_zones = ["eu01-1", "eu01-2"]
  }]

  validation {
    condition     = length(var.node_pools) > 0
    error_message = "node_pools needs at least one pool."
  }
  validation {
    condition     = alltrue([for p in var.node_pools : can(regex("^[a-z][a-z0-9-]{0,14}$", p.name))])
    error_message = "node pool names must be 1-15 characters of lower-case letters, digits and '-'."
  }
  validation {
    condition     = alltrue([for p in var.node_pools : p.minimum >= 1 && p.minimum <= p.maximum && p.maximum <= 1000])
    error_message = "each node pool needs 1 <= minimum <= maximum <= 1000."
  }
  validation {
    condition     = alltrue([for p in var.node_pools : length(p.availability_zones) > 0])
    error_message = "each node pool needs at least one availability zone."
  }
  validation {
    condition     = alltrue(flatten([for p in var.node_pools : [for t in p.taints : contains(["NoSchedule", "PreferNoSchedule", "NoExecute"], t.effect)]]))
    error_message = "taint effects must be NoSchedule, PreferNoSchedule or NoExecute."
  }
}

variable "maintenance_window" {
  description = "Daily window in which SKE may update Kubernetes and the node images (times as HH:MM:SSZ or with an offset)."
  type = object({
    start                                = string
    end                                  = string
    enable_kubernetes_version_updates    = optional(bool, true)
    enable_machine_image_version_updates = optional(bool, true)
  })
  default = {
    start = "01:00:00Z"
    end   = "02:00:00Z"
  }

  validation {
    condition = alltrue([for t in [var.maintenance_window.start, var.maintenance_window.end] :
    can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](Z|[+-][0-9]{2}:[0-9]{2})$", t))])
    error_message = "maintenance_window start and end must look like 01:00:00Z or 03:00:00+02:00."
  }
}

variable "api_allowed_cidrs" {
  description = "ACL extension: the only CIDRs allowed to reach the cluster's API server (the operators' networks, CI's egress). Required: there is no default, and an open API must be asked for explicitly with 0.0.0.0/0."
  type        = list(string)

  validation {
    condition     = length(var.api_allowed_cidrs) > 0
    error_message = "api_allowed_cidrs must name at least one CIDR (0.0.0.0/0 only if the API is meant to be open)."
  }
  validation {
    condition     = alltrue([for c in var.api_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "api_allowed_cidrs must be CIDRs."
  }
}

variable "hibernation_schedules" {
  description = "Optional hibernation (scale to zero) schedules in crontab syntax, e.g. start \"0 20 * * 1-5\", end \"0 7 * * 1-5\"."
  type = list(object({
    start    = string
    end      = string
    timezone = optional(string)
  }))
  default = []
}

variable "kubeconfig_expiration_seconds" {
  description = "Lifetime of the generated admin kubeconfig; Terraform renews it before it expires."
  type        = number
  default     = 7776000 # 90 days

  validation {
    condition     = var.kubeconfig_expiration_seconds >= 600
    error_message = "kubeconfig_expiration_seconds must be at least 600."
  }
}

# --- DNS -----------------------------------------------------------------------------------

variable "dns_subdomain" {
  description = "Label of the free STACKIT subdomain: the zone becomes <label>.runs.onstackit.cloud."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.dns_subdomain))
    error_message = "dns_subdomain must be a DNS label (lower-case letters, digits, '-')."
  }
}

variable "dns_contact_email" {
  description = "Contact e-mail of the DNS zone (SOA)."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.dns_contact_email))
    error_message = "dns_contact_email must be an e-mail address."
  }
}

variable "dns_ttl" {
  description = "TTL in seconds of the records for the Ingress."
  type        = number
  default     = 300

  validation {
    condition     = var.dns_ttl >= 60
    error_message = "dns_ttl must be at least 60."
  }
}

variable "ingress_hostnames" {
  description = "Names under the zone that point at the Ingress controller's public IP; \"*\" covers every name (api.<zone>, console.<zone>, ...)."
  type        = list(string)
  default     = ["*"]

  validation {
    condition     = alltrue([for h in var.ingress_hostnames : can(regex("^(\\*|[a-z0-9]([a-z0-9-]*[a-z0-9])?)(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$", h))])
    error_message = "ingress_hostnames must be relative DNS names such as \"*\", \"api\" or \"*.apps\"."
  }
}

variable "enable_dns_extension" {
  description = "Enable SKE's DNS extension for the zone, so that annotated Services and Ingresses can manage further records themselves."
  type        = bool
  default     = true
}

# --- Object storage ---------------------------------------------------------------------------

variable "backup_bucket_name" {
  description = "Bucket for the database backups of Strata's PostgreSQL instances."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.backup_bucket_name))
    error_message = "backup_bucket_name must be 3-63 characters of lower-case letters, digits and '-'."
  }
}

variable "credentials_expiration" {
  description = "Expiry of the object storage access keys as an RFC 3339 timestamp; null: they do not expire."
  type        = string
  default     = null

  validation {
    condition     = var.credentials_expiration == null || can(formatdate("YYYY", var.credentials_expiration))
    error_message = "credentials_expiration must be an RFC 3339 timestamp such as 2027-12-31T00:00:00Z."
  }
}
