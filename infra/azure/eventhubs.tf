# Event Hubs as the Kafka endpoint (SASL_SSL, PLAIN, $ConnectionString, port 9093).
# One event hub per topic, 12 partitions each; a consumer group can use at most
# one member per partition, which is why the chart caps the consumers' HPA at 12.
# Standard tier: Kafka endpoint, no Kafka transactions (the design needs none),
# at most 7 days of retention, so full replays read the event store (docs/analysts.md).
locals {
  topics = {
    "phonebill.product-change"   = { partitions = 12, consumer_groups = ["kos", "projector"] }
    "kos.product-change-results" = { partitions = 12, consumer_groups = ["command-service"] }
    "kos.billing"                = { partitions = 12, consumer_groups = ["projector"] }
    "phonebill.bill-inquiries"   = { partitions = 12, consumer_groups = ["projector"] }
    "phonebill.dead-letter"      = { partitions = 12, consumer_groups = [] }
  }
  message_retention_days = 7

  consumer_groups = merge([
    for topic, t in local.topics : {
      for group in t.consumer_groups : "${topic}/${group}" => { topic = topic, group = group }
    }
  ]...)
}

resource "azurerm_eventhub_namespace" "main" {
  name                          = "evhns-${local.name}-${var.unique_suffix}"
  location                      = azurerm_resource_group.main.location
  resource_group_name           = azurerm_resource_group.main.name
  sku                           = "Standard"
  capacity                      = var.eventhubs_capacity
  auto_inflate_enabled          = true
  maximum_throughput_units      = var.eventhubs_max_throughput_units
  minimum_tls_version           = "1.2"
  public_network_access_enabled = false
  # The Kafka clients authenticate with a SAS connection string ($ConnectionString).
  local_authentication_enabled = true
  tags                         = var.tags

  network_rulesets {
    default_action                 = "Deny"
    public_network_access_enabled  = false
    trusted_service_access_enabled = true
  }
}

resource "azurerm_eventhub" "topics" {
  for_each          = local.topics
  name              = each.key
  namespace_id      = azurerm_eventhub_namespace.main.id
  partition_count   = each.value.partitions
  message_retention = local.message_retention_days
}

# Kafka clients manage their own groups through the Kafka protocol; these declare
# the design's groups per topic so they show up (and can be inspected) in Azure.
resource "azurerm_eventhub_consumer_group" "groups" {
  for_each            = local.consumer_groups
  name                = each.value.group
  namespace_name      = azurerm_eventhub_namespace.main.name
  eventhub_name       = azurerm_eventhub.topics[each.value.topic].name
  resource_group_name = azurerm_resource_group.main.name
}

# Send and listen only: topics are created here, never by the services.
resource "azurerm_eventhub_namespace_authorization_rule" "services" {
  name                = "phonebill-services"
  namespace_name      = azurerm_eventhub_namespace.main.name
  resource_group_name = azurerm_resource_group.main.name
  listen              = true
  send                = true
  manage              = false
}

resource "azurerm_private_endpoint" "eventhubs" {
  name                = "pe-${local.name}-evhns"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  subnet_id           = azurerm_subnet.endpoints.id
  tags                = var.tags

  private_service_connection {
    name                           = "eventhubs"
    private_connection_resource_id = azurerm_eventhub_namespace.main.id
    subresource_names              = ["namespace"]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "eventhubs"
    private_dns_zone_ids = [azurerm_private_dns_zone.zones["eventhubs"].id]
  }
}
