variable "kubernetes_version" {
  description = "Kubernetes release to install, as MAJOR.MINOR.PATCH (for example 1.35.4); packages come from pkgs.k8s.io."
  type        = string

  validation {
    condition     = can(regex("^1\\.[0-9]+\\.[0-9]+$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.35.4 (no leading v)."
  }
}

variable "cluster_name" {
  description = "Name of the cluster, used in kubeadm's configuration."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.cluster_name))
    error_message = "cluster_name must be 2-31 characters of lower-case letters, digits and '-', starting with a letter."
  }
}

variable "control_plane_endpoint" {
  description = "Address (IP or DNS name, without port) at which nodes reach the API server: the control plane's private IP or the load balancer's VIP."
  type        = string

  validation {
    condition     = length(var.control_plane_endpoint) > 0 && !can(regex(":", var.control_plane_endpoint))
    error_message = "control_plane_endpoint must be a host name or IPv4 address without a port."
  }
}

variable "api_server_cert_sans" {
  description = "Extra names and addresses in the API server's certificate (for example the floating IP that kubectl uses)."
  type        = list(string)
  default     = []
}

variable "pod_cidr" {
  description = "CIDR of the pod network (Calico's IP pool)."
  type        = string
  default     = "10.244.0.0/16"

  validation {
    condition     = can(cidrhost(var.pod_cidr, 0))
    error_message = "pod_cidr must be a CIDR such as 10.244.0.0/16."
  }
}

variable "service_cidr" {
  description = "CIDR of Kubernetes Service cluster IPs."
  type        = string
  default     = "10.96.0.0/12"

  validation {
    condition     = can(cidrhost(var.service_cidr, 0))
    error_message = "service_cidr must be a CIDR such as 10.96.0.0/12."
  }
}

variable "bootstrap_token" {
  description = "kubeadm bootstrap token with which workers join, format [a-z0-9]{6}.[a-z0-9]{16}."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[a-z0-9]{6}\\.[a-z0-9]{16}$", var.bootstrap_token))
    error_message = "bootstrap_token must match [a-z0-9]{6}.[a-z0-9]{16} (kubeadm token generate prints one)."
  }
}

variable "bootstrap_token_ttl" {
  description = "How long the bootstrap token stays valid, as a Go duration; a token that never expires (0s) is refused. Workers added later need a valid token."
  type        = string
  default     = "24h0m0s"

  validation {
    condition     = can(regex("^([0-9]+h)?([0-9]+m)?([0-9]+s)?$", var.bootstrap_token_ttl)) && length(var.bootstrap_token_ttl) > 0 && !can(regex("^(0+[hms])+$", var.bootstrap_token_ttl))
    error_message = "bootstrap_token_ttl must be a non-zero duration such as 24h0m0s or 2h."
  }
}

variable "ca_certificate" {
  description = "PEM certificate of the cluster CA. Workers trust the API server through it, so discovery needs no unsafe CA skip."
  type        = string

  validation {
    condition     = can(regex("-----BEGIN CERTIFICATE-----", var.ca_certificate))
    error_message = "ca_certificate must be a PEM certificate."
  }
}

variable "ca_private_key" {
  description = "PEM private key of the cluster CA; written to the control-plane node only."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("-----BEGIN [A-Z ]*PRIVATE KEY-----", var.ca_private_key))
    error_message = "ca_private_key must be a PEM private key."
  }
}

variable "cloud_config" {
  description = "cloud.conf (INI) for the OpenStack cloud controller manager and Cinder CSI, with the credentials they use."
  type        = string
  sensitive   = true
}

variable "cloud_provider_openstack_version" {
  description = "Release tag of kubernetes/cloud-provider-openstack whose manifests are applied (match the Kubernetes minor)."
  type        = string
  default     = "v1.35.0"

  validation {
    condition     = can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+$", var.cloud_provider_openstack_version))
    error_message = "cloud_provider_openstack_version must be a release tag such as v1.35.0."
  }
}

variable "calico_version" {
  description = "Calico release tag whose calico.yaml is applied (never \"latest\")."
  type        = string
  default     = "v3.32.2"

  validation {
    condition     = can(regex("^v3\\.[0-9]+\\.[0-9]+$", var.calico_version))
    error_message = "calico_version must be a Calico 3 release tag such as v3.32.2."
  }
}

variable "enable_cinder_csi" {
  description = "Install the Cinder CSI driver and make a Cinder StorageClass the default."
  type        = bool
  default     = true
}

variable "admin_user" {
  description = "Login user of the image; it gets a copy of the admin kubeconfig on the control plane."
  type        = string
  default     = "ubuntu"
}
