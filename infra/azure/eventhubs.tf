# Event Hubs as the Kafka endpoint (SASL_SSL on port 9093). Each service signs in as its
# own Entra ID identity (OAUTHBEARER with a token got through workload identity) and may
# send to and read exactly the event hubs topic_access.tf grants it; there is no shared
# key (local authentication is off).
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
  # No SAS key or connection string is accepted: a shared key would let any pod holding
  # it publish on every topic. The services sign in with Entra ID tokens.
  local_authentication_enabled = false
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

  lifecycle {
    # The access table must name exactly these event hubs: a topic it lacks would have
    # no sender or listener, and one it adds would have no event hub to be granted on.
    precondition {
      condition     = toset(keys(local.topic_access)) == toset(keys(local.topics))
      error_message = "events/topic-access.json must list exactly the event hubs of local.topics."
    }
    precondition {
      condition     = alltrue([for grant in values(local.topic_grants) : contains(local.services, grant.service)])
      error_message = "events/topic-access.json names a sender or listener that is not one of local.services."
    }
  }
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

# Each service's identity: Data Sender on the event hubs it publishes to, Data Receiver
# on those it consumes (topic_access.tf), each assignment scoped to one event hub.
# Neither role can create or delete an event hub: Terraform alone makes the topics.
resource "azurerm_role_assignment" "event_hubs" {
  for_each             = local.topic_grants
  scope                = azurerm_eventhub.topics[each.value.topic].id
  role_definition_name = each.value.role
  principal_id         = azurerm_user_assigned_identity.services[each.value.service].principal_id
  # Said, not looked up: a just-made identity may not have replicated in Entra ID yet.
  principal_type = "ServicePrincipal"
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
