# Design 4.1.1: VNet 10.0.0.0/16 with the application, database, cache and gateway
# subnets. Two subnets are added: pods (Azure CNI gives every pod a VNet address
# from its own subnet; a /24 would cap the cluster at ~250 pods) and private
# endpoints (Event Hubs, Key Vault), so network policies can name each
# dependency's CIDR exactly. infra/tests checks the chart's policies against these.
locals {
  subnet_cidrs = {
    application = "10.0.1.0/24" # AKS nodes
    database    = "10.0.2.0/24" # PostgreSQL Flexible Server (delegated)
    cache       = "10.0.3.0/24" # Redis private endpoint
    gateway     = "10.0.4.0/24" # Application Gateway
    endpoints   = "10.0.5.0/24" # private endpoints: Event Hubs, Key Vault
    pods        = "10.0.16.0/20"
  }
  app_gateway_private_ip = "10.0.4.10"

  private_dns_zones = {
    redis     = "privatelink.redis.cache.windows.net"
    keyvault  = "privatelink.vaultcore.azure.net"
    eventhubs = "privatelink.servicebus.windows.net"
    # VNet-integrated Flexible Server needs a zone ending in .postgres.database.azure.com.
    postgres = "${local.name}.private.postgres.database.azure.com"
  }
}

resource "azurerm_virtual_network" "main" {
  name                = "vnet-${local.name}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  address_space       = ["10.0.0.0/16"]
  tags                = var.tags
}

resource "azurerm_subnet" "application" {
  name                 = "snet-application"
  resource_group_name  = azurerm_resource_group.main.name
  virtual_network_name = azurerm_virtual_network.main.name
  address_prefixes     = [local.subnet_cidrs.application]
  service_endpoints    = ["Microsoft.ContainerRegistry"]
}

resource "azurerm_subnet" "pods" {
  name                 = "snet-pods"
  resource_group_name  = azurerm_resource_group.main.name
  virtual_network_name = azurerm_virtual_network.main.name
  address_prefixes     = [local.subnet_cidrs.pods]

  delegation {
    name = "aks-pods"
    service_delegation {
      name    = "Microsoft.ContainerService/managedClusters"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }
}

resource "azurerm_subnet" "database" {
  name                 = "snet-database"
  resource_group_name  = azurerm_resource_group.main.name
  virtual_network_name = azurerm_virtual_network.main.name
  address_prefixes     = [local.subnet_cidrs.database]

  delegation {
    name = "postgresql-flexible"
    service_delegation {
      name    = "Microsoft.DBforPostgreSQL/flexibleServers"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }
}

resource "azurerm_subnet" "cache" {
  name                              = "snet-cache"
  resource_group_name               = azurerm_resource_group.main.name
  virtual_network_name              = azurerm_virtual_network.main.name
  address_prefixes                  = [local.subnet_cidrs.cache]
  private_endpoint_network_policies = "Enabled" # so nsg-data applies to the private endpoint
}

resource "azurerm_subnet" "gateway" {
  name                 = "ApplicationGatewaySubnet"
  resource_group_name  = azurerm_resource_group.main.name
  virtual_network_name = azurerm_virtual_network.main.name
  address_prefixes     = [local.subnet_cidrs.gateway]
}

resource "azurerm_subnet" "endpoints" {
  name                              = "snet-private-endpoints"
  resource_group_name               = azurerm_resource_group.main.name
  virtual_network_name              = azurerm_virtual_network.main.name
  address_prefixes                  = [local.subnet_cidrs.endpoints]
  private_endpoint_network_policies = "Enabled"
}

# Design 4.1.2, Application Gateway NSG: HTTPS and HTTP from the Internet; v2 SKUs
# also need the GatewayManager range and the Azure load balancer probes.
resource "azurerm_network_security_group" "gateway" {
  #checkov:skip=CKV_AZURE_160:design 4.1.2 opens port 80 on the gateway; it only answers with a redirect to HTTPS (ssl-redirect)
  name                = "nsg-${local.name}-appgw"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags

  security_rule {
    name                       = "https"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = "443"
    source_address_prefix      = "Internet"
    destination_address_prefix = "*"
  }

  security_rule {
    name                       = "http-redirect"
    priority                   = 110
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = "80"
    source_address_prefix      = "Internet"
    destination_address_prefix = "*"
  }

  security_rule {
    name                       = "gateway-manager"
    priority                   = 120
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = "65200-65535"
    source_address_prefix      = "GatewayManager"
    destination_address_prefix = "*"
  }

  security_rule {
    name                       = "azure-load-balancer"
    priority                   = 130
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "*"
    source_port_range          = "*"
    destination_port_range     = "*"
    source_address_prefix      = "AzureLoadBalancer"
    destination_address_prefix = "*"
  }
}

resource "azurerm_subnet_network_security_group_association" "gateway" {
  subnet_id                 = azurerm_subnet.gateway.id
  network_security_group_id = azurerm_network_security_group.gateway.id
}

# Design 4.1.2, AKS NSG: from the gateway subnet in; to the database and cache out.
# AGIC sends to pod IPs on the service port (8080), so that is allowed too; Redis
# is reached on its TLS port 6380 (the plain 6379 is disabled), Event Hubs on 9093.
resource "azurerm_network_security_group" "aks" {
  name                = "nsg-${local.name}-aks"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags

  security_rule {
    name                       = "from-app-gateway"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_ranges    = ["80", "443", "8080"]
    source_address_prefix      = local.subnet_cidrs.gateway
    destination_address_prefix = "*"
  }

  security_rule {
    name                       = "to-postgresql"
    priority                   = 100
    direction                  = "Outbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = "5432"
    source_address_prefix      = "*"
    destination_address_prefix = local.subnet_cidrs.database
  }

  security_rule {
    name                       = "to-redis-tls"
    priority                   = 110
    direction                  = "Outbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = "6380"
    source_address_prefix      = "*"
    destination_address_prefix = local.subnet_cidrs.cache
  }

  security_rule {
    name                       = "to-event-hubs-kafka"
    priority                   = 120
    direction                  = "Outbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = "9093"
    source_address_prefix      = "*"
    destination_address_prefix = local.subnet_cidrs.endpoints
  }
}

resource "azurerm_subnet_network_security_group_association" "application" {
  subnet_id                 = azurerm_subnet.application.id
  network_security_group_id = azurerm_network_security_group.aks.id
}

resource "azurerm_subnet_network_security_group_association" "pods" {
  subnet_id                 = azurerm_subnet.pods.id
  network_security_group_id = azurerm_network_security_group.aks.id
}

# Data subnets: the flows the cluster needs, written down (PostgreSQL, Redis TLS,
# Event Hubs Kafka, Key Vault). Azure's default rules still allow the rest of the
# VNet; pod egress is enforced by the chart's NetworkPolicies. A deny rule here
# needs the flows of PostgreSQL HA and the Application Gateway's certificate
# fetch checked on a live environment first (infra/README.md, open items).
resource "azurerm_network_security_group" "data" {
  name                = "nsg-${local.name}-data"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags

  security_rule {
    name                       = "from-aks"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_ranges    = ["5432", "6380", "9093", "443"]
    source_address_prefixes    = [local.subnet_cidrs.application, local.subnet_cidrs.pods]
    destination_address_prefix = "*"
  }
}

resource "azurerm_subnet_network_security_group_association" "data" {
  for_each = {
    database  = azurerm_subnet.database.id
    cache     = azurerm_subnet.cache.id
    endpoints = azurerm_subnet.endpoints.id
  }
  subnet_id                 = each.value
  network_security_group_id = azurerm_network_security_group.data.id
}

resource "azurerm_private_dns_zone" "zones" {
  for_each            = local.private_dns_zones
  name                = each.value
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "zones" {
  for_each              = local.private_dns_zones
  name                  = "link-${each.key}"
  resource_group_name   = azurerm_resource_group.main.name
  private_dns_zone_name = azurerm_private_dns_zone.zones[each.key].name
  virtual_network_id    = azurerm_virtual_network.main.id
  tags                  = var.tags
}
