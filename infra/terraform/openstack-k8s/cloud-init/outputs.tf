output "control_plane_user_data" {
  description = "Cloud-init user data (#cloud-config) of the control-plane node."
  value       = "#cloud-config\n${yamlencode(local.control_plane)}"
  sensitive   = true
}

output "worker_user_data" {
  description = "Cloud-init user data (#cloud-config) shared by every worker node."
  value       = "#cloud-config\n${yamlencode(local.worker)}"
  sensitive   = true
}
