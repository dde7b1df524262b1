# --- Cluster -------------------------------------------------------------------

variable "cluster_name" {
  description = "Name of the cluster; prefixes every OpenStack resource and names the nodes (<name>-control-plane, <name>-worker-N)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.cluster_name))
    error_message = "cluster_name must be 2-31 characters of lower-case letters, digits and '-', starting with a letter."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes release installed with kubeadm, as MAJOR.MINOR.PATCH."
  type        = string
  default     = "1.35.4"

  validation {
    condition     = can(regex("^1\\.[0-9]+\\.[0-9]+$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.35.4 (no leading v)."
  }
}

variable "worker_count" {
  description = "Number of worker nodes."
  type        = number
  default     = 2

  validation {
    condition     = var.worker_count >= 0 && var.worker_count <= 50 && floor(var.worker_count) == var.worker_count
    error_message = "worker_count must be a whole number from 0 to 50."
  }
}

variable "pod_cidr" {
  description = "CIDR of the pod network (flannel VXLAN overlay); must not overlap subnet_cidr or service_cidr."
  type        = string
  default     = "10.244.0.0/16"

  validation {
    condition     = can(cidrhost(var.pod_cidr, 0))
    error_message = "pod_cidr must be a CIDR."
  }
}

variable "service_cidr" {
  description = "CIDR of Service cluster IPs."
  type        = string
  default     = "10.96.0.0/12"

  validation {
    condition     = can(cidrhost(var.service_cidr, 0))
    error_message = "service_cidr must be a CIDR."
  }
}

variable "bootstrap_token" {
  description = "kubeadm bootstrap token, [a-z0-9]{6}.[a-z0-9]{16}; `kubeadm token generate` or the README's openssl one-liner makes one."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[a-z0-9]{6}\\.[a-z0-9]{16}$", var.bootstrap_token))
    error_message = "bootstrap_token must match [a-z0-9]{6}.[a-z0-9]{16}."
  }
}

variable "ca_certificate" {
  description = "PEM certificate of the cluster CA (see the README for the openssl command that makes one)."
  type        = string

  validation {
    condition     = can(regex("-----BEGIN CERTIFICATE-----", var.ca_certificate))
    error_message = "ca_certificate must be a PEM certificate."
  }
}

variable "ca_private_key" {
  description = "PEM private key of the cluster CA; it reaches the control-plane node only."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("-----BEGIN [A-Z ]*PRIVATE KEY-----", var.ca_private_key))
    error_message = "ca_private_key must be a PEM private key."
  }
}

variable "cloud_provider_openstack_version" {
  description = "Release tag of kubernetes/cloud-provider-openstack (cloud controller manager and Cinder CSI); match the Kubernetes minor."
  type        = string
  default     = "v1.35.0"

  validation {
    condition     = can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+$", var.cloud_provider_openstack_version))
    error_message = "cloud_provider_openstack_version must be a tag such as v1.35.0."
  }
}

variable "flannel_version" {
  description = "flannel release tag, or \"latest\"."
  type        = string
  default     = "latest"

  validation {
    condition     = var.flannel_version == "latest" || can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+$", var.flannel_version))
    error_message = "flannel_version must be \"latest\" or a tag such as v0.27.0."
  }
}

variable "enable_cinder_csi" {
  description = "Install the Cinder CSI driver and a default StorageClass backed by Cinder volumes."
  type        = bool
  default     = true
}

# --- OpenStack ---------------------------------------------------------------------

variable "external_network_id" {
  description = "ID of the external (provider) network: router gateway and floating IPs."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-fA-F-]{32,36}$", var.external_network_id))
    error_message = "external_network_id must be a network UUID (openstack network show public -f value -c id)."
  }
}

variable "external_network_name" {
  description = "Name of the external network (the floating IP pool), e.g. public on DevStack."
  type        = string
  default     = "public"
}

variable "image_name" {
  description = "Glance image of the nodes: an Ubuntu 22.04 or 24.04 cloud image."
  type        = string
  default     = "ubuntu-24.04"
}

variable "ssh_user" {
  description = "Login user of the image."
  type        = string
  default     = "ubuntu"
}

variable "control_plane_flavor" {
  description = "Flavor of the control-plane node (kubeadm needs at least 2 vCPUs and 1.7 GiB RAM)."
  type        = string
}

variable "worker_flavor" {
  description = "Flavor of the worker nodes."
  type        = string
}

variable "boot_volume_size" {
  description = "When above 0, nodes boot from a Cinder volume of this many GiB instead of the flavor's local disk."
  type        = number
  default     = 0

  validation {
    condition     = var.boot_volume_size >= 0 && floor(var.boot_volume_size) == var.boot_volume_size
    error_message = "boot_volume_size must be a whole number of GiB, 0 for the flavor's disk."
  }
}

variable "availability_zone" {
  description = "Nova availability zone of the nodes (null: the cloud's default)."
  type        = string
  default     = null
}

variable "subnet_cidr" {
  description = "CIDR of the cluster's subnet."
  type        = string
  default     = "10.10.0.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 16))
    error_message = "subnet_cidr must be an IPv4 CIDR with room for at least 16 addresses."
  }
}

variable "dns_nameservers" {
  description = "DNS servers handed to the nodes by DHCP."
  type        = list(string)
  default     = ["9.9.9.9", "1.1.1.1"]

  validation {
    condition     = alltrue([for ip in var.dns_nameservers : can(cidrhost("${ip}/32", 0))])
    error_message = "dns_nameservers must be IPv4 addresses."
  }
}

variable "ssh_public_key" {
  description = "OpenSSH public key for the nodes; null makes OpenStack generate a key pair (its private key is then an output)."
  type        = string
  default     = null

  validation {
    condition     = var.ssh_public_key == null || can(regex("^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)) ", var.ssh_public_key))
    error_message = "ssh_public_key must be an OpenSSH public key (ssh-ed25519, ssh-rsa or ecdsa)."
  }
}

variable "ssh_allowed_cidrs" {
  description = "CIDRs allowed to SSH to the control-plane node (needed to fetch the kubeconfig)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.ssh_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "ssh_allowed_cidrs must be CIDRs."
  }
}

variable "api_allowed_cidrs" {
  description = "CIDRs allowed to reach the Kubernetes API (6443) from outside the cluster network."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.api_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "api_allowed_cidrs must be CIDRs."
  }
}

variable "nodeport_allowed_cidrs" {
  description = "CIDRs allowed to reach NodePort services (30000-32767) on the workers; the cluster subnet is always allowed."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.nodeport_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "nodeport_allowed_cidrs must be CIDRs."
  }
}

variable "api_server_exposure" {
  description = "How the API server is reached from outside: \"floating_ip\" on the control-plane node, \"loadbalancer\" (an Octavia load balancer with a floating IP), or \"private\" (cluster network only)."
  type        = string
  default     = "floating_ip"

  validation {
    condition     = contains(["floating_ip", "loadbalancer", "private"], var.api_server_exposure)
    error_message = "api_server_exposure must be floating_ip, loadbalancer or private."
  }
}

variable "enable_octavia_services" {
  description = "Let the cloud controller manager create Octavia load balancers for Services of type LoadBalancer (needs Octavia in the cloud)."
  type        = bool
  default     = false
}

variable "openstack_auth_url" {
  description = "Keystone URL, as reachable from the nodes, for the cloud controller manager and Cinder CSI."
  type        = string

  validation {
    condition     = can(regex("^https?://", var.openstack_auth_url))
    error_message = "openstack_auth_url must be an http(s) URL."
  }
}

variable "openstack_region" {
  description = "OpenStack region of the cluster."
  type        = string
  default     = "RegionOne"
}

variable "application_credential" {
  description = "Application credential used by the cloud controller manager and Cinder CSI. null: the module creates one for the current user (Keystone must allow it)."
  type = object({
    id     = string
    secret = string
  })
  default   = null
  sensitive = true
}
