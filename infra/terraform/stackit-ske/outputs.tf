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

output "backup_bucket" {
  description = "Bucket for database backups."
  value       = stackit_objectstorage_bucket.backups.name
}

output "backup_credentials" {
  description = "S3 access key pair for database backups (goes into the cluster as a Secret). Its group reaches the buckets of this project only; the state bucket lives in the project of stackit-state."
  value = {
    access_key_id     = stackit_objectstorage_credential.backups.access_key
    secret_access_key = stackit_objectstorage_credential.backups.secret_access_key
  }
  sensitive = true
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
  }
}
