output "api_server_url" {
  description = "URL of the Kubernetes API."
  value       = module.cluster.api_server_url
}

output "control_plane_address" {
  description = "Floating IP of the control-plane node (SSH as ubuntu)."
  value       = module.cluster.control_plane_address
}

output "worker_private_ips" {
  description = "Private addresses of the workers."
  value       = module.cluster.worker_private_ips
}

output "kubeconfig_command" {
  description = "Fetches the admin kubeconfig (set KEY to the private key of ssh_public_key_file)."
  value       = module.cluster.kubeconfig_command
}
