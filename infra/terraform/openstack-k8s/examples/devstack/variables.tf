# --- How Terraform reaches the DevStack APIs -----------------------------------------

variable "openstack_cloud" {
  description = "Entry of clouds.yaml to use (DevStack writes /etc/openstack/clouds.yaml with \"devstack\"); null to use the auth_* variables or OS_* environment variables."
  type        = string
  default     = null
}

variable "auth_url" {
  description = "Keystone URL, e.g. http://<devstack host>/identity/v3 (null: from clouds.yaml or OS_AUTH_URL)."
  type        = string
  default     = null
}

variable "user_name" {
  description = "OpenStack user (null: from clouds.yaml or OS_USERNAME)."
  type        = string
  default     = null
}

variable "password" {
  description = "Password of user_name (null: from clouds.yaml or OS_PASSWORD)."
  type        = string
  default     = null
  sensitive   = true
}

variable "project_name" {
  description = "OpenStack project that owns the cluster (DevStack: demo)."
  type        = string
  default     = null
}

variable "region" {
  description = "OpenStack region."
  type        = string
  default     = "RegionOne"
}

# --- DevStack specifics ----------------------------------------------------------------

variable "devstack_host_ip" {
  description = "HOST_IP of the DevStack host: the nodes reach Keystone at http://<this>/identity."
  type        = string

  validation {
    condition     = can(cidrhost("${var.devstack_host_ip}/32", 0))
    error_message = "devstack_host_ip must be an IPv4 address."
  }
}

variable "external_network_id" {
  description = "ID of DevStack's \"public\" network; null looks it up by name (an API call during plan)."
  type        = string
  default     = null
}

variable "image_name" {
  description = "Ubuntu cloud image uploaded to Glance (see README)."
  type        = string
  default     = "ubuntu-24.04"
}

variable "flavor" {
  description = "Flavor of every node; DevStack's ds2G has the 2 vCPUs and 2 GiB that kubeadm needs."
  type        = string
  default     = "ds2G"
}

variable "worker_count" {
  description = "Number of workers; a single DevStack host has room for few."
  type        = number
  default     = 1

  validation {
    condition     = var.worker_count >= 1 && var.worker_count <= 5
    error_message = "worker_count must be 1 to 5 on a single-node DevStack (CoreDNS and the CSI controller need a worker)."
  }
}

variable "ssh_public_key_file" {
  description = "OpenSSH public key installed on the nodes."
  type        = string
  default     = "~/.ssh/id_ed25519.pub"
}

variable "admin_cidrs" {
  description = "Where kubectl and SSH come from: on DevStack the host reaches floating IPs from br-ex (172.24.4.1), and nothing outside the host can reach that range."
  type        = list(string)
  default     = ["172.24.4.0/24"]

  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0))])
    error_message = "admin_cidrs must name at least one CIDR."
  }
}

# --- Cluster secrets (never committed) -----------------------------------------------------

variable "bootstrap_token" {
  description = "kubeadm bootstrap token (see README: TF_VAR_bootstrap_token)."
  type        = string
  sensitive   = true
}

variable "ca_certificate_file" {
  description = "PEM file of the cluster CA certificate."
  type        = string
  default     = "pki/ca.crt"
}

variable "ca_private_key_file" {
  description = "PEM file of the cluster CA private key."
  type        = string
  default     = "pki/ca.key"
}
