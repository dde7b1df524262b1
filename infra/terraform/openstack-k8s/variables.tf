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
  description = "Number of worker nodes, at least 1: the control plane is tainted, so CoreDNS, Calico's controllers and the Cinder CSI controller run on workers and stay Pending without one."
  type        = number
  default     = 2

  validation {
    condition     = var.worker_count >= 1 && var.worker_count <= 50 && floor(var.worker_count) == var.worker_count
    error_message = "worker_count must be a whole number from 1 to 50 (without a worker, CoreDNS and the CSI controller cannot run)."
  }
}

variable "pod_cidr" {
  description = "CIDR of the pod network (Calico IP pool, IP-in-IP between nodes); must not overlap subnet_cidr or service_cidr."
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

variable "bootstrap_token_ttl" {
  description = "How long the bootstrap token stays valid after kubeadm init, as a Go duration. Workers created later need a valid token: see the README, \"Adding workers later\". 0s (never expires) is refused."
  type        = string
  default     = "24h0m0s"

  validation {
    condition     = can(regex("^([0-9]+h)?([0-9]+m)?([0-9]+s)?$", var.bootstrap_token_ttl)) && length(var.bootstrap_token_ttl) > 0 && !can(regex("^(0+[hms])+$", var.bootstrap_token_ttl))
    error_message = "bootstrap_token_ttl must be a non-zero duration such as 24h0m0s or 2h."
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

variable "calico_version" {
  description = "Calico release whose calico.yaml is applied (pod network with NetworkPolicy enforcement). A tag, never \"latest\": upgrades are reviewed changes (README, \"Versions\")."
  type        = string
  default     = "v3.32.2"

  validation {
    condition     = can(regex("^v3\\.[0-9]+\\.[0-9]+$", var.calico_version))
    error_message = "calico_version must be a Calico 3 release tag such as v3.32.2."
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
  description = "CIDRs allowed to reach the Kubernetes API (6443) from outside the cluster network. Required, with no default: an API open to the internet must be asked for explicitly with 0.0.0.0/0."
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

variable "octavia_lb_method" {
  description = "Balancing algorithm of Octavia pools: the API server's (api_server_exposure = \"loadbalancer\") and, as the cloud controller manager's lb-method, those of LoadBalancer Services. ROUND_ROBIN for the amphora provider; the OVN provider supports SOURCE_IP_PORT only."
  type        = string
  default     = "ROUND_ROBIN"

  validation {
    condition     = contains(["ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP", "SOURCE_IP_PORT"], var.octavia_lb_method)
    error_message = "octavia_lb_method must be ROUND_ROBIN, LEAST_CONNECTIONS, SOURCE_IP or SOURCE_IP_PORT."
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
