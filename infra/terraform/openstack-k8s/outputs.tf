output "api_server_url" {
  description = "URL of the Kubernetes API for kubectl."
  value       = "https://${local.public_api_address}:6443"
}

output "control_plane_address" {
  description = "Address at which the control-plane node is reached over SSH (floating IP when there is one)."
  value       = var.api_server_exposure == "floating_ip" ? local.public_api_address : local.control_plane_ip
}

output "control_plane_private_ip" {
  description = "Private address of the control-plane node."
  value       = local.control_plane_ip
}

output "worker_private_ips" {
  description = "Private addresses of the workers (reach them through the control plane: ssh -J)."
  value       = [for p in openstack_networking_port_v2.workers : p.all_fixed_ips[0]]
}

output "network_id" {
  description = "ID of the cluster network."
  value       = openstack_networking_network_v2.nodes.id
}

output "subnet_id" {
  description = "ID of the cluster subnet (for load balancers of Services)."
  value       = openstack_networking_subnet_v2.nodes.id
}

output "ssh_private_key" {
  description = "Private key of the generated key pair (null when ssh_public_key was given)."
  value       = openstack_compute_keypair_v2.nodes.private_key
  sensitive   = true
}

output "kubeconfig_command" {
  description = "Shell command that fetches the admin kubeconfig from the control plane once cloud-init has finished (about 10 minutes), pointing it at api_server_url. Set KEY to the private key file."
  value = join(" ", [
    "ssh -i \"$${KEY:?set KEY to the private key file}\" -o StrictHostKeyChecking=accept-new",
    "${var.ssh_user}@${var.api_server_exposure == "floating_ip" ? local.public_api_address : local.control_plane_ip}",
    "'sudo cloud-init status --wait >/dev/null; sudo cat /etc/kubernetes/admin.conf'",
    "| sed 's#server: https://.*:6443#server: https://${local.public_api_address}:6443#'",
    "> kubeconfig-${local.name} && chmod 600 kubeconfig-${local.name}",
  ])
}
