# Design 3.1: AKS 1.29, Standard tier, Azure CNI, Azure network policies, AGIC,
# Entra ID RBAC, private cluster; a system pool and a tainted application pool,
# both over zones 1-3. Workload identity and the Key Vault CSI driver are on for
# the chart's SecretProviderClass.
locals {
  application_pool = {
    vm_size   = "Standard_D4s_v3" # 4 vCPU, 16 GB
    min_count = 3
    max_count = 10
    taint     = "application-workload=true:NoSchedule"
    labels    = { workload = "application" }
  }
}

resource "azurerm_user_assigned_identity" "aks" {
  name                = "id-${local.name}-aks"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags
}

# The control plane joins nodes and pods to our subnets.
resource "azurerm_role_assignment" "aks_network" {
  scope                = azurerm_virtual_network.main.id
  role_definition_name = "Network Contributor"
  principal_id         = azurerm_user_assigned_identity.aks.principal_id
}

resource "azurerm_kubernetes_cluster" "main" {
  #checkov:skip=CKV_AZURE_117:OS disks are ephemeral and host encryption is on; customer-managed keys (disk encryption set) are not in the design
  #checkov:skip=CKV_AZURE_232:the AGIC add-on pod cannot run on a CriticalAddonsOnly system pool (azurerm docs) and the application pool is tainted for the services
  name                = "aks-${local.name}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  dns_prefix          = local.name
  kubernetes_version  = var.kubernetes_version
  sku_tier            = "Standard"
  tags                = var.tags

  private_cluster_enabled           = true
  local_account_disabled            = true
  role_based_access_control_enabled = true
  azure_policy_enabled              = true
  oidc_issuer_enabled               = true
  workload_identity_enabled         = true
  automatic_upgrade_channel         = "patch"
  node_os_upgrade_channel           = "NodeImage"

  azure_active_directory_role_based_access_control {
    tenant_id              = data.azurerm_client_config.current.tenant_id
    azure_rbac_enabled     = true
    admin_group_object_ids = var.aks_admin_group_object_ids
  }

  # Design 10.2.1: maintenance on Sundays from 02:00 KST (AKS needs at least 4 hours).
  maintenance_window_auto_upgrade {
    frequency   = "Weekly"
    interval    = 1
    duration    = 4
    day_of_week = "Sunday"
    start_time  = "02:00"
    utc_offset  = "+09:00"
  }

  # System pool: D2s_v3 x3 (3-5). Not restricted to critical add-ons: the AGIC
  # add-on pod must run here, since the application pool is tainted.
  default_node_pool {
    name                        = "system"
    vm_size                     = "Standard_D2s_v3"
    auto_scaling_enabled        = true
    node_count                  = 3
    min_count                   = 3
    max_count                   = 5
    zones                       = var.zones
    vnet_subnet_id              = azurerm_subnet.application.id
    pod_subnet_id               = azurerm_subnet.pods.id
    max_pods                    = 50
    os_disk_type                = "Ephemeral"
    os_disk_size_gb             = 48 # within the D2s_v3 cache (50 GiB)
    host_encryption_enabled     = true
    temporary_name_for_rotation = "systemtmp"
    tags                        = var.tags

    upgrade_settings {
      max_surge = "33%"
    }
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.aks.id]
  }

  network_profile {
    network_plugin    = "azure"
    network_policy    = "azure"
    load_balancer_sku = "standard"
    service_cidr      = "10.1.0.0/16"
    dns_service_ip    = "10.1.0.10"
  }

  key_vault_secrets_provider {
    secret_rotation_enabled  = true
    secret_rotation_interval = "2m"
  }

  ingress_application_gateway {
    gateway_id = azurerm_application_gateway.main.id
  }

  oms_agent {
    log_analytics_workspace_id      = azurerm_log_analytics_workspace.main.id
    msi_auth_for_monitoring_enabled = true
  }

  lifecycle {
    ignore_changes = [default_node_pool[0].node_count]
  }

  depends_on = [azurerm_role_assignment.aks_network]
}

# Application pool: D4s_v3 x3 (3-10), tainted so only workloads that tolerate it
# (the chart's pods) land here, and labelled for the chart's nodeSelector.
resource "azurerm_kubernetes_cluster_node_pool" "application" {
  name                    = "app"
  kubernetes_cluster_id   = azurerm_kubernetes_cluster.main.id
  mode                    = "User"
  vm_size                 = local.application_pool.vm_size
  auto_scaling_enabled    = true
  node_count              = local.application_pool.min_count
  min_count               = local.application_pool.min_count
  max_count               = local.application_pool.max_count
  zones                   = var.zones
  vnet_subnet_id          = azurerm_subnet.application.id
  pod_subnet_id           = azurerm_subnet.pods.id
  max_pods                = 50
  os_disk_type            = "Ephemeral"
  os_disk_size_gb         = 96 # within the D4s_v3 cache (100 GiB)
  host_encryption_enabled = true
  node_taints             = [local.application_pool.taint]
  node_labels             = local.application_pool.labels
  tags                    = var.tags

  upgrade_settings {
    max_surge = "33%"
  }

  lifecycle {
    ignore_changes = [node_count]
  }
}

# AGIC add-on identity: it rewrites the Application Gateway from the Ingress objects.
resource "azurerm_role_assignment" "agic_gateway" {
  scope                = azurerm_application_gateway.main.id
  role_definition_name = "Contributor"
  principal_id         = azurerm_kubernetes_cluster.main.ingress_application_gateway[0].ingress_application_gateway_identity[0].object_id
}

resource "azurerm_role_assignment" "agic_resource_group" {
  scope                = azurerm_resource_group.main.id
  role_definition_name = "Reader"
  principal_id         = azurerm_kubernetes_cluster.main.ingress_application_gateway[0].ingress_application_gateway_identity[0].object_id
}

resource "azurerm_role_assignment" "agic_subnet" {
  scope                = azurerm_subnet.gateway.id
  role_definition_name = "Network Contributor"
  principal_id         = azurerm_kubernetes_cluster.main.ingress_application_gateway[0].ingress_application_gateway_identity[0].object_id
}

resource "azurerm_role_assignment" "agic_gateway_identity" {
  scope                = azurerm_user_assigned_identity.app_gateway.id
  role_definition_name = "Managed Identity Operator"
  principal_id         = azurerm_kubernetes_cluster.main.ingress_application_gateway[0].ingress_application_gateway_identity[0].object_id
}
