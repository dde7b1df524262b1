# STACKIT: an SKE cluster, its DNS zone on a free subdomain with the records
# the Ingress needs, and object storage for database backups. Terraform state
# lives in the bucket of ../stackit-state, whose life cycle is its own.

provider "stackit" {
  default_region           = var.region
  service_account_key_path = var.service_account_key_path

  ske_custom_endpoint                = lookup(var.api_endpoint_overrides, "ske", null)
  dns_custom_endpoint                = lookup(var.api_endpoint_overrides, "dns", null)
  objectstorage_custom_endpoint      = lookup(var.api_endpoint_overrides, "objectstorage", null)
  iaas_custom_endpoint               = lookup(var.api_endpoint_overrides, "iaas", null)
  token_custom_endpoint              = lookup(var.api_endpoint_overrides, "token", null)
  resourcemanager_custom_endpoint    = lookup(var.api_endpoint_overrides, "resourcemanager", null)
  service_account_custom_endpoint    = lookup(var.api_endpoint_overrides, "service_account", null)
  authorization_custom_endpoint      = lookup(var.api_endpoint_overrides, "authorization", null)
  service_enablement_custom_endpoint = lookup(var.api_endpoint_overrides, "service_enablement", null)
}

locals {
  zone_dns_name = "${var.dns_subdomain}.runs.onstackit.cloud"
  s3_endpoint   = "https://object.storage.${var.region}.onstackit.cloud"
}

# --- DNS zone ---------------------------------------------------------------------------------

resource "stackit_dns_zone" "this" {
  project_id    = var.project_id
  name          = "${var.cluster_name}-zone"
  dns_name      = local.zone_dns_name
  contact_email = var.dns_contact_email
  type          = "primary"
  default_ttl   = var.dns_ttl
  description   = "Strata public names (cluster ${var.cluster_name})"
}

# The Ingress controller's LoadBalancer Service takes this address (see the
# ingress_service_annotations output), so DNS can point at it before the
# controller exists.
resource "stackit_public_ip" "ingress" {
  project_id = var.project_id
  labels = {
    "strata-cluster" = var.cluster_name
    "strata-role"    = "ingress"
  }
}

resource "stackit_dns_record_set" "ingress" {
  for_each   = toset(var.ingress_hostnames)
  project_id = var.project_id
  zone_id    = stackit_dns_zone.this.zone_id
  name       = each.value
  type       = "A"
  ttl        = var.dns_ttl
  records    = [stackit_public_ip.ingress.ip]
  comment    = "Ingress of SKE cluster ${var.cluster_name}"
}

# --- SKE cluster ---------------------------------------------------------------------------------

resource "stackit_ske_cluster" "this" {
  project_id             = var.project_id
  name                   = var.cluster_name
  kubernetes_version_min = var.kubernetes_version_min

  node_pools = [for p in var.node_pools : {
    name               = p.name
    machine_type       = p.machine_type
    minimum            = p.minimum
    maximum            = p.maximum
    availability_zones = p.availability_zones
    os_name            = p.os_name
    os_version_min     = p.os_version_min
    volume_size        = p.volume_size
    volume_type        = p.volume_type
    labels             = p.labels
    taints             = length(p.taints) > 0 ? p.taints : null
  }]

  maintenance = {
    start                                = var.maintenance_window.start
    end                                  = var.maintenance_window.end
    enable_kubernetes_version_updates    = var.maintenance_window.enable_kubernetes_version_updates
    enable_machine_image_version_updates = var.maintenance_window.enable_machine_image_version_updates
  }

  extensions = {
    acl = {
      enabled       = true
      allowed_cidrs = var.api_allowed_cidrs
    }
    dns = {
      enabled = var.enable_dns_extension
      zones   = var.enable_dns_extension ? [stackit_dns_zone.this.dns_name] : []
    }
  }

  hibernations = length(var.hibernation_schedules) > 0 ? var.hibernation_schedules : null
}

resource "stackit_ske_kubeconfig" "admin" {
  project_id     = var.project_id
  cluster_name   = stackit_ske_cluster.this.name
  expiration     = var.kubeconfig_expiration_seconds
  refresh        = true
  refresh_before = floor(var.kubeconfig_expiration_seconds / 10)
}

# --- Object storage --------------------------------------------------------------------------------

resource "stackit_objectstorage_bucket" "backups" {
  project_id = var.project_id
  name       = var.backup_bucket_name
}

resource "stackit_objectstorage_credentials_group" "backups" {
  project_id = var.project_id
  name       = "${var.cluster_name}-backups"
  depends_on = [stackit_objectstorage_bucket.backups]
}

resource "stackit_objectstorage_credential" "backups" {
  project_id           = var.project_id
  credentials_group_id = stackit_objectstorage_credentials_group.backups.credentials_group_id
  expiration_timestamp = var.credentials_expiration
}
