# Cloud-init user data for the nodes of a kubeadm cluster. Everything is
# built as data and serialised with yamlencode, so that no value can break
# the YAML; the shell scripts are static files (checked by shellcheck).

locals {
  kubelet_extra_args = [{ name = "cloud-provider", value = "external" }]
  api_endpoint       = "${var.control_plane_endpoint}:6443"

  node_env = join("\n", [
    "KUBERNETES_VERSION=${var.kubernetes_version}",
    "POD_CIDR=${var.pod_cidr}",
    "CLOUD_PROVIDER_OPENSTACK_VERSION=${var.cloud_provider_openstack_version}",
    "CALICO_VERSION=${var.calico_version}",
    "ENABLE_CINDER_CSI=${var.enable_cinder_csi}",
    "ADMIN_USER=${var.admin_user}",
    "",
  ])

  kubeadm_init = join("---\n", [
    yamlencode({
      apiVersion = "kubeadm.k8s.io/v1beta4"
      kind       = "InitConfiguration"
      bootstrapTokens = [{
        token  = var.bootstrap_token
        ttl    = var.bootstrap_token_ttl
        groups = ["system:bootstrappers:kubeadm:default-node-token"]
        usages = ["signing", "authentication"]
      }]
      nodeRegistration = { kubeletExtraArgs = local.kubelet_extra_args }
    }),
    yamlencode({
      apiVersion           = "kubeadm.k8s.io/v1beta4"
      kind                 = "ClusterConfiguration"
      clusterName          = var.cluster_name
      kubernetesVersion    = "v${var.kubernetes_version}"
      controlPlaneEndpoint = local.api_endpoint
      apiServer            = { certSANs = distinct(concat([var.control_plane_endpoint], var.api_server_cert_sans)) }
      networking = {
        podSubnet     = var.pod_cidr
        serviceSubnet = var.service_cidr
      }
    }),
    yamlencode({
      apiVersion   = "kubelet.config.k8s.io/v1beta1"
      kind         = "KubeletConfiguration"
      cgroupDriver = "systemd"
    }),
  ])

  # Workers discover the cluster from a kubeconfig that pins the CA, and
  # authenticate their TLS bootstrap with the token.
  discovery_kubeconfig = yamlencode({
    apiVersion = "v1"
    kind       = "Config"
    clusters = [{
      name = var.cluster_name
      cluster = {
        server                       = "https://${local.api_endpoint}"
        "certificate-authority-data" = base64encode(var.ca_certificate)
      }
    }]
    contexts = [{
      name    = "bootstrap"
      context = { cluster = var.cluster_name, user = "tls-bootstrap-token-user" }
    }]
    "current-context" = "bootstrap"
    users = [{
      name = "tls-bootstrap-token-user"
      user = { token = var.bootstrap_token }
    }]
  })

  kubeadm_join = yamlencode({
    apiVersion = "kubeadm.k8s.io/v1beta4"
    kind       = "JoinConfiguration"
    discovery = {
      file              = { kubeConfigPath = "/etc/strata/discovery.conf" }
      tlsBootstrapToken = var.bootstrap_token
    }
    nodeRegistration = { kubeletExtraArgs = local.kubelet_extra_args }
  })

  common_files = [
    { path = "/etc/strata/node.env", permissions = "0644", owner = "root:root", content = local.node_env },
    {
      path        = "/usr/local/sbin/strata-node-install"
      permissions = "0755"
      owner       = "root:root"
      encoding    = "b64"
      content     = filebase64("${path.module}/files/strata-node-install.sh")
    },
  ]

  control_plane = {
    package_update = true
    packages       = ["curl", "ca-certificates"]
    write_files = concat(local.common_files, [
      {
        path        = "/usr/local/sbin/strata-control-plane"
        permissions = "0755"
        owner       = "root:root"
        encoding    = "b64"
        content     = filebase64("${path.module}/files/strata-control-plane.sh")
      },
      { path = "/etc/strata/kubeadm.yaml", permissions = "0600", owner = "root:root", content = local.kubeadm_init },
      { path = "/etc/strata/cloud.conf", permissions = "0600", owner = "root:root", content = var.cloud_config },
      { path = "/etc/kubernetes/pki/ca.crt", permissions = "0644", owner = "root:root", content = var.ca_certificate },
      { path = "/etc/kubernetes/pki/ca.key", permissions = "0600", owner = "root:root", content = var.ca_private_key },
    ])
    runcmd = [
      ["/usr/local/sbin/strata-node-install"],
      ["/usr/local/sbin/strata-control-plane"],
    ]
  }

  worker = {
    package_update = true
    packages       = ["curl", "ca-certificates"]
    write_files = concat(local.common_files, [
      {
        path        = "/usr/local/sbin/strata-worker"
        permissions = "0755"
        owner       = "root:root"
        encoding    = "b64"
        content     = filebase64("${path.module}/files/strata-worker.sh")
      },
      { path = "/etc/strata/discovery.conf", permissions = "0600", owner = "root:root", content = local.discovery_kubeconfig },
      { path = "/etc/strata/kubeadm-join.yaml", permissions = "0600", owner = "root:root", content = local.kubeadm_join },
    ])
    runcmd = [
      ["/usr/local/sbin/strata-node-install"],
      ["/usr/local/sbin/strata-worker"],
    ]
  }
}
