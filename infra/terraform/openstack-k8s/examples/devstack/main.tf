# A Kubernetes cluster on the single-node DevStack of infra/devstack.

provider "openstack" {
  # checkov:skip=CKV_OPENSTACK_1:Not hard-coded - var.password is null by default (clouds.yaml is used) and comes from TF_VAR_password otherwise
  cloud       = var.openstack_cloud
  auth_url    = var.auth_url
  user_name   = var.user_name
  password    = var.password
  tenant_name = var.project_name
  region      = var.region
}

data "openstack_networking_network_v2" "public" {
  count    = var.external_network_id == null ? 1 : 0
  name     = "public"
  external = true
}

module "cluster" {
  source = "../.."

  cluster_name          = "strata-dev"
  worker_count          = var.worker_count
  external_network_id   = var.external_network_id != null ? var.external_network_id : data.openstack_networking_network_v2.public[0].id
  external_network_name = "public"
  image_name            = var.image_name
  control_plane_flavor  = var.flavor
  worker_flavor         = var.flavor
  ssh_public_key        = trimspace(file(pathexpand(var.ssh_public_key_file)))
  ssh_allowed_cidrs     = var.admin_cidrs
  api_allowed_cidrs     = var.admin_cidrs
  api_server_exposure   = "floating_ip" # DevStack here runs no Octavia
  openstack_auth_url    = "http://${var.devstack_host_ip}/identity"
  openstack_region      = var.region

  bootstrap_token = var.bootstrap_token
  ca_certificate  = file(var.ca_certificate_file)
  ca_private_key  = sensitive(file(var.ca_private_key_file))
}
