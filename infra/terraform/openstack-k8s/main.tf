# Kubernetes on OpenStack: one network, a control-plane node and N workers,
# bootstrapped by cloud-init with kubeadm. See README.md for the picture.

locals {
  name = var.cluster_name

  # The application credential that the in-cluster OpenStack integrations use.
  create_app_credential = var.application_credential == null
  app_credential_id     = local.create_app_credential ? openstack_identity_application_credential_v3.cloud_provider[0].id : var.application_credential.id
  app_credential_secret = local.create_app_credential ? openstack_identity_application_credential_v3.cloud_provider[0].secret : var.application_credential.secret

  control_plane_ip = openstack_networking_port_v2.control_plane.all_fixed_ips[0]

  # Nodes talk to the API server on the private network: the control plane's
  # address, or the load balancer's VIP.
  control_plane_endpoint = var.api_server_exposure == "loadbalancer" ? openstack_lb_loadbalancer_v2.api[0].vip_address : local.control_plane_ip

  # The address kubectl uses from outside.
  public_api_address = (
    var.api_server_exposure == "floating_ip" ? openstack_networking_floatingip_v2.api[0].address :
    var.api_server_exposure == "loadbalancer" ? openstack_networking_floatingip_v2.api[0].address :
    local.control_plane_ip
  )

  cloud_conf = join("\n", [
    "[Global]",
    "auth-url=${var.openstack_auth_url}",
    "application-credential-id=${local.app_credential_id}",
    "application-credential-secret=${local.app_credential_secret}",
    "region=${var.openstack_region}",
    "",
    "[LoadBalancer]",
    "enabled=${var.enable_octavia_services}",
    "lb-method=${var.octavia_lb_method}",
    "floating-network-id=${var.external_network_id}",
    "subnet-id=${openstack_networking_subnet_v2.nodes.id}",
    "",
    "[BlockStorage]",
    "ignore-volume-az=true",
    "",
  ])
}

# --- Identity ------------------------------------------------------------------------

resource "openstack_identity_application_credential_v3" "cloud_provider" {
  count       = local.create_app_credential ? 1 : 0
  name        = "${local.name}-cloud-provider"
  description = "Used by the OpenStack cloud controller manager and Cinder CSI of cluster ${local.name}"
}

# --- Network ---------------------------------------------------------------------------

resource "openstack_networking_network_v2" "nodes" {
  name           = "${local.name}-net"
  admin_state_up = true
}

resource "openstack_networking_subnet_v2" "nodes" {
  name            = "${local.name}-subnet"
  network_id      = openstack_networking_network_v2.nodes.id
  cidr            = var.subnet_cidr
  ip_version      = 4
  dns_nameservers = var.dns_nameservers
}

resource "openstack_networking_router_v2" "nodes" {
  name                = "${local.name}-router"
  admin_state_up      = true
  external_network_id = var.external_network_id
}

resource "openstack_networking_router_interface_v2" "nodes" {
  router_id = openstack_networking_router_v2.nodes.id
  subnet_id = openstack_networking_subnet_v2.nodes.id
}

# --- Security groups -------------------------------------------------------------------
# Ports from the Kubernetes documentation ("Ports and Protocols"); the
# scheduler (10259) and controller manager (10257) listen on localhost only,
# so they need no rule.

resource "openstack_networking_secgroup_v2" "nodes" {
  name        = "${local.name}-nodes"
  description = "Every node of ${local.name}: pod network and kubelet"
}

resource "openstack_networking_secgroup_v2" "control_plane" {
  name        = "${local.name}-control-plane"
  description = "Control plane of ${local.name}: API server and etcd"
}

resource "openstack_networking_secgroup_v2" "workers" {
  name        = "${local.name}-workers"
  description = "Workers of ${local.name}: NodePort services and kube-proxy health"
}

locals {
  node_rules = {
    # Calico's BGP sessions between nodes (routes of each node's pod block).
    calico_bgp = { protocol = "tcp", from = 179, to = 179 }
    # Calico Typha (only used from 50 nodes on, but harmless to allow).
    calico_typha = { protocol = "tcp", from = 5473, to = 5473 }
    # kubelet API: logs, exec, metrics (control plane and metrics-server).
    kubelet = { protocol = "tcp", from = 10250, to = 10250 }
  }
}

resource "openstack_networking_secgroup_rule_v2" "nodes_internal" {
  for_each          = local.node_rules
  description       = "${each.key} between nodes"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = each.value.protocol
  port_range_min    = each.value.from
  port_range_max    = each.value.to
  remote_group_id   = openstack_networking_secgroup_v2.nodes.id
  security_group_id = openstack_networking_secgroup_v2.nodes.id
}

# Calico's IP-in-IP encapsulation (IP protocol 4) carries pod-to-pod traffic
# between nodes; the outer header has the nodes' own addresses.
resource "openstack_networking_secgroup_rule_v2" "nodes_ipip" {
  description       = "Calico IP-in-IP between nodes (pod network)"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "ipip"
  remote_group_id   = openstack_networking_secgroup_v2.nodes.id
  security_group_id = openstack_networking_secgroup_v2.nodes.id
}

resource "openstack_networking_secgroup_rule_v2" "nodes_icmp" {
  description       = "ICMP between nodes (path MTU discovery, diagnostics)"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "icmp"
  remote_group_id   = openstack_networking_secgroup_v2.nodes.id
  security_group_id = openstack_networking_secgroup_v2.nodes.id
}

resource "openstack_networking_secgroup_rule_v2" "api_from_subnet" {
  description       = "kube-apiserver from the cluster subnet (nodes, load balancer)"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 6443
  port_range_max    = 6443
  remote_ip_prefix  = var.subnet_cidr
  security_group_id = openstack_networking_secgroup_v2.control_plane.id
}

resource "openstack_networking_secgroup_rule_v2" "api_from_pods" {
  description       = "kube-apiserver from pods (in-cluster clients such as CoreDNS)"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 6443
  port_range_max    = 6443
  remote_ip_prefix  = var.pod_cidr
  security_group_id = openstack_networking_secgroup_v2.control_plane.id
}

resource "openstack_networking_secgroup_rule_v2" "api_external" {
  for_each          = toset(var.api_server_exposure == "private" ? [] : var.api_allowed_cidrs)
  description       = "kube-apiserver from ${each.value}"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 6443
  port_range_max    = 6443
  remote_ip_prefix  = each.value
  security_group_id = openstack_networking_secgroup_v2.control_plane.id
}

resource "openstack_networking_secgroup_rule_v2" "etcd" {
  description       = "etcd client and peer API between control-plane nodes"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 2379
  port_range_max    = 2380
  remote_group_id   = openstack_networking_secgroup_v2.control_plane.id
  security_group_id = openstack_networking_secgroup_v2.control_plane.id
}

resource "openstack_networking_secgroup_rule_v2" "ssh" {
  for_each          = toset(var.ssh_allowed_cidrs)
  description       = "SSH from ${each.value}"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 22
  port_range_max    = 22
  remote_ip_prefix  = each.value
  security_group_id = openstack_networking_secgroup_v2.control_plane.id
}

resource "openstack_networking_secgroup_rule_v2" "ssh_from_control_plane" {
  description       = "SSH to workers through the control-plane node (jump host)"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 22
  port_range_max    = 22
  remote_group_id   = openstack_networking_secgroup_v2.control_plane.id
  security_group_id = openstack_networking_secgroup_v2.workers.id
}

resource "openstack_networking_secgroup_rule_v2" "kube_proxy_health" {
  description       = "kube-proxy health check (load balancers of LoadBalancer Services)"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 10256
  port_range_max    = 10256
  remote_ip_prefix  = var.subnet_cidr
  security_group_id = openstack_networking_secgroup_v2.workers.id
}

resource "openstack_networking_secgroup_rule_v2" "nodeports" {
  for_each = {
    for pair in setproduct(distinct(concat([var.subnet_cidr], var.nodeport_allowed_cidrs)), ["tcp", "udp"]) :
    "${pair[0]}-${pair[1]}" => { cidr = pair[0], protocol = pair[1] }
  }
  description       = "NodePort services (${each.value.protocol}) from ${each.value.cidr}"
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = each.value.protocol
  port_range_min    = 30000
  port_range_max    = 32767
  remote_ip_prefix  = each.value.cidr
  security_group_id = openstack_networking_secgroup_v2.workers.id
}

# --- Key pair --------------------------------------------------------------------------------

resource "openstack_compute_keypair_v2" "nodes" {
  name       = "${local.name}-key"
  public_key = var.ssh_public_key # null: OpenStack generates the pair
}

# --- API server access -----------------------------------------------------------------------

resource "openstack_networking_floatingip_v2" "api" {
  count       = var.api_server_exposure == "private" ? 0 : 1
  pool        = var.external_network_name
  description = "Kubernetes API of ${local.name}"
}

resource "openstack_networking_floatingip_associate_v2" "api_on_control_plane" {
  count       = var.api_server_exposure == "floating_ip" ? 1 : 0
  floating_ip = openstack_networking_floatingip_v2.api[0].address
  port_id     = openstack_networking_port_v2.control_plane.id
  depends_on  = [openstack_networking_router_interface_v2.nodes]
}

resource "openstack_lb_loadbalancer_v2" "api" {
  count         = var.api_server_exposure == "loadbalancer" ? 1 : 0
  name          = "${local.name}-api"
  description   = "Kubernetes API of ${local.name}"
  vip_subnet_id = openstack_networking_subnet_v2.nodes.id
}

resource "openstack_lb_listener_v2" "api" {
  count           = var.api_server_exposure == "loadbalancer" ? 1 : 0
  name            = "${local.name}-api"
  loadbalancer_id = openstack_lb_loadbalancer_v2.api[0].id
  protocol        = "TCP"
  protocol_port   = 6443
  allowed_cidrs   = distinct(concat(var.api_allowed_cidrs, [var.subnet_cidr]))
}

resource "openstack_lb_pool_v2" "api" {
  count       = var.api_server_exposure == "loadbalancer" ? 1 : 0
  name        = "${local.name}-api"
  listener_id = openstack_lb_listener_v2.api[0].id
  protocol    = "TCP"
  # The amphora driver's default. The OVN provider driver (no amphora VMs)
  # implements only SOURCE_IP_PORT: set octavia_lb_method accordingly.
  lb_method = var.octavia_lb_method
}

resource "openstack_lb_monitor_v2" "api" {
  count       = var.api_server_exposure == "loadbalancer" ? 1 : 0
  pool_id     = openstack_lb_pool_v2.api[0].id
  type        = "TCP"
  delay       = 10
  timeout     = 5
  max_retries = 3
}

resource "openstack_lb_member_v2" "api" {
  count         = var.api_server_exposure == "loadbalancer" ? 1 : 0
  pool_id       = openstack_lb_pool_v2.api[0].id
  address       = local.control_plane_ip
  protocol_port = 6443
  subnet_id     = openstack_networking_subnet_v2.nodes.id
}

resource "openstack_networking_floatingip_associate_v2" "api_on_loadbalancer" {
  count       = var.api_server_exposure == "loadbalancer" ? 1 : 0
  floating_ip = openstack_networking_floatingip_v2.api[0].address
  port_id     = openstack_lb_loadbalancer_v2.api[0].vip_port_id
  depends_on  = [openstack_networking_router_interface_v2.nodes]
}

# --- Nodes -------------------------------------------------------------------------------------

module "user_data" {
  source = "./cloud-init"

  cluster_name                     = local.name
  kubernetes_version               = var.kubernetes_version
  control_plane_endpoint           = local.control_plane_endpoint
  api_server_cert_sans             = distinct([local.control_plane_ip, local.public_api_address])
  pod_cidr                         = var.pod_cidr
  service_cidr                     = var.service_cidr
  bootstrap_token                  = var.bootstrap_token
  bootstrap_token_ttl              = var.bootstrap_token_ttl
  ca_certificate                   = var.ca_certificate
  ca_private_key                   = var.ca_private_key
  cloud_config                     = local.cloud_conf
  cloud_provider_openstack_version = var.cloud_provider_openstack_version
  calico_version                   = var.calico_version
  enable_cinder_csi                = var.enable_cinder_csi
  admin_user                       = var.ssh_user
}

resource "openstack_networking_port_v2" "control_plane" {
  name               = "${local.name}-control-plane"
  network_id         = openstack_networking_network_v2.nodes.id
  admin_state_up     = true
  security_group_ids = [openstack_networking_secgroup_v2.nodes.id, openstack_networking_secgroup_v2.control_plane.id]

  fixed_ip {
    subnet_id = openstack_networking_subnet_v2.nodes.id
  }

  # Pod addresses travel only inside Calico's IP-in-IP packets, which carry
  # the node's own address, so Neutron's port security (anti-spoofing) stays on.
}

resource "openstack_networking_port_v2" "workers" {
  count              = var.worker_count
  name               = "${local.name}-worker-${count.index}"
  network_id         = openstack_networking_network_v2.nodes.id
  admin_state_up     = true
  security_group_ids = [openstack_networking_secgroup_v2.nodes.id, openstack_networking_secgroup_v2.workers.id]

  fixed_ip {
    subnet_id = openstack_networking_subnet_v2.nodes.id
  }
}

resource "openstack_compute_instance_v2" "control_plane" {
  name              = "${local.name}-control-plane"
  image_name        = var.image_name
  flavor_name       = var.control_plane_flavor
  key_pair          = openstack_compute_keypair_v2.nodes.name
  availability_zone = var.availability_zone
  user_data         = module.user_data.control_plane_user_data
  metadata          = { "strata-cluster" = local.name, "strata-role" = "control-plane" }

  network {
    port = openstack_networking_port_v2.control_plane.id
  }

  dynamic "block_device" {
    for_each = var.boot_volume_size > 0 ? [1] : []
    content {
      uuid                  = data.openstack_images_image_v2.node[0].id
      source_type           = "image"
      destination_type      = "volume"
      volume_size           = var.boot_volume_size
      boot_index            = 0
      delete_on_termination = true
    }
  }

  # Replacing the control plane replaces the cluster; a new image or user
  # data must not do that silently.
  lifecycle {
    ignore_changes = [user_data, image_name]
  }

  depends_on = [openstack_networking_router_interface_v2.nodes]
}

resource "openstack_compute_instance_v2" "workers" {
  count             = var.worker_count
  name              = "${local.name}-worker-${count.index}"
  image_name        = var.image_name
  flavor_name       = var.worker_flavor
  key_pair          = openstack_compute_keypair_v2.nodes.name
  availability_zone = var.availability_zone
  user_data         = module.user_data.worker_user_data
  metadata          = { "strata-cluster" = local.name, "strata-role" = "worker" }

  network {
    port = openstack_networking_port_v2.workers[count.index].id
  }

  dynamic "block_device" {
    for_each = var.boot_volume_size > 0 ? [1] : []
    content {
      uuid                  = data.openstack_images_image_v2.node[0].id
      source_type           = "image"
      destination_type      = "volume"
      volume_size           = var.boot_volume_size
      boot_index            = 0
      delete_on_termination = true
    }
  }

  lifecycle {
    ignore_changes = [user_data, image_name]
  }

  depends_on = [openstack_networking_router_interface_v2.nodes]
}

# Boot volumes need the image's ID; looked up only when they are used.
data "openstack_images_image_v2" "node" {
  count       = var.boot_volume_size > 0 ? 1 : 0
  name        = var.image_name
  most_recent = true
}
