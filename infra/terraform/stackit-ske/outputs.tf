output "cluster_name" {
  description = "Name of the SKE cluster."
  value       = stackit_ske_cluster.this.name
}

output "kubernetes_version" {
  description = "Kubernetes version the cluster runs."
  value       = stackit_ske_cluster.this.kubernetes_version_used
}

output "kubeconfig" {
  description = "Admin kubeconfig of the cluster (write it with: terraform output -raw kubeconfig > kubeconfig)."
  value       = stackit_ske_kubeconfig.admin.kube_config
  sensitive   = true
}

output "kubeconfig_expires_at" {
  description = "When the kubeconfig expires; a terraform apply before then renews it."
  value       = stackit_ske_kubeconfig.admin.expires_at
}

output "egress_address_ranges" {
  description = "Addresses from which the cluster's traffic leaves (for allow-lists elsewhere)."
  value       = stackit_ske_cluster.this.egress_address_ranges
}

output "dns_zone" {
  description = "The public DNS zone, e.g. strata.runs.onstackit.cloud."
  value       = stackit_dns_zone.this.dns_name
}

output "ingress_ip" {
  description = "Public IP reserved for the Ingress controller's LoadBalancer Service."
  value       = stackit_public_ip.ingress.ip
}

output "ingress_service_annotations" {
  description = "Annotations that make the Ingress controller's LoadBalancer Service use ingress_ip."
  value       = { "lb.stackit.cloud/external-address" = stackit_public_ip.ingress.ip }
}

output "s3_endpoint" {
  description = "S3 endpoint of STACKIT object storage in this region."
  value       = local.s3_endpoint
}

output "state_bucket" {
  description = "Bucket for Terraform state."
  value       = stackit_objectstorage_bucket.state.name
}

output "backup_bucket" {
  description = "Bucket for database backups."
  value       = stackit_objectstorage_bucket.backups.name
}

output "state_credentials" {
  description = "S3 access key pair for the Terraform state bucket."
  value = {
    access_key_id     = stackit_objectstorage_credential.state.access_key
    secret_access_key = stackit_objectstorage_credential.state.secret_access_key
  }
  sensitive = true
}

output "backup_credentials" {
  description = "S3 access key pair for database backups (goes into the cluster as a Secret)."
  value = {
    access_key_id     = stackit_objectstorage_credential.backups.access_key
    secret_access_key = stackit_objectstorage_credential.backups.secret_access_key
  }
  sensitive = true
}

output "backend_config" {
  description = "Settings of an S3 backend in the state bucket, for terraform init -backend-config (credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)."
  value = {
    bucket                      = stackit_objectstorage_bucket.state.name
    region                      = var.region
    endpoints                   = { s3 = local.s3_endpoint }
    use_path_style              = true
    use_lockfile                = true
    skip_credentials_validation = true
    skip_region_validation      = true
    skip_requesting_account_id  = true
    skip_s3_checksum            = true
  }
}

output "backend_hcl" {
  description = "The same settings as a backend.hcl file for terraform init -backend-config=backend.hcl (add a key line)."
  value       = <<-HCL
    bucket                      = "${stackit_objectstorage_bucket.state.name}"
    region                      = "${var.region}"
    endpoints                   = { s3 = "${local.s3_endpoint}" }
    use_path_style              = true
    use_lockfile                = true
    skip_credentials_validation = true
    skip_region_validation      = true
    skip_requesting_account_id  = true
    skip_s3_checksum            = true
  HCL
}

output "gitops_bootstrap" {
  description = "Non-secret values the GitOps bootstrap needs (secrets: kubeconfig and backup_credentials outputs)."
  value = {
    cluster_name                = stackit_ske_cluster.this.name
    region                      = var.region
    base_domain                 = stackit_dns_zone.this.dns_name
    ingress_ip                  = stackit_public_ip.ingress.ip
    ingress_service_annotations = { "lb.stackit.cloud/external-address" = stackit_public_ip.ingress.ip }
    s3_endpoint                 = local.s3_endpoint
    backup_bucket               = stackit_objectstorage_bucket.backups.name
    state_bucket                = stackit_objectstorage_bucket.state.name
  }
}
