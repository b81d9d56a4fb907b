# Design 4.2: Application Gateway v2 over zones 1-3, autoscaling from 2, public IP
# plus private IP 10.0.4.10, WAF OWASP CRS 3.2 in Prevention with a 100
# requests/minute/IP rate limit. The design names Standard_v2, but a WAF policy
# needs the WAF_v2 SKU, so WAF_v2 it is. AGIC owns listeners, pools and rules:
# the placeholders below only satisfy the API and are ignored afterwards.
resource "azurerm_public_ip" "app_gateway" {
  name                = "pip-${local.name}-appgw"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  sku                 = "Standard"
  allocation_method   = "Static"
  zones               = var.zones
  tags                = var.tags
}

# Reads the TLS certificate from Key Vault.
resource "azurerm_user_assigned_identity" "app_gateway" {
  name                = "id-${local.name}-appgw"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags
}

# The certificate alone (a certificate's key is read as the secret of its name, the
# fifth part of https://<vault>.vault.azure.net/secrets/<name>/<version>), not the vault.
resource "azurerm_role_assignment" "app_gateway_key_vault" {
  count                = var.tls_certificate_secret_id == null ? 0 : 1
  scope                = "${azurerm_key_vault.main.id}/secrets/${split("/", var.tls_certificate_secret_id)[4]}"
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.app_gateway.principal_id
}

resource "azurerm_web_application_firewall_policy" "main" {
  name                = "waf-${local.name}"
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags

  custom_rules {
    name                 = "RateLimitPerClientIp"
    priority             = 10
    rule_type            = "RateLimitRule"
    action               = "Block"
    rate_limit_duration  = "OneMin"
    rate_limit_threshold = 100
    group_rate_limit_by  = "ClientAddr"

    match_conditions {
      match_variables {
        variable_name = "RemoteAddr"
      }
      operator           = "IPMatch"
      negation_condition = false
      match_values       = ["0.0.0.0/0"]
    }
  }

  policy_settings {
    enabled                     = true
    mode                        = "Prevention"
    request_body_check          = true
    max_request_body_size_in_kb = 128
  }

  managed_rules {
    managed_rule_set {
      type    = "OWASP"
      version = "3.2"
    }
    # "Bad reputation IPs" of the design.
    managed_rule_set {
      type    = "Microsoft_BotManagerRuleSet"
      version = "1.0"
    }
  }
}

locals {
  agic_placeholder = "agic-placeholder"
}

resource "azurerm_application_gateway" "main" {
  #checkov:skip=CKV_AZURE_217:the HTTP listener is a placeholder the API requires; AGIC replaces it from the Ingress, whose ssl-redirect annotation turns port 80 into a redirect to HTTPS
  name                              = "agw-${local.name}"
  location                          = azurerm_resource_group.main.location
  resource_group_name               = azurerm_resource_group.main.name
  zones                             = var.zones
  firewall_policy_id                = azurerm_web_application_firewall_policy.main.id
  force_firewall_policy_association = true
  http2_enabled                     = true
  tags                              = var.tags

  sku {
    name = "WAF_v2"
    tier = "WAF_v2"
  }

  autoscale_configuration {
    min_capacity = 2
    max_capacity = 10
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.app_gateway.id]
  }

  ssl_policy {
    policy_type = "Predefined"
    policy_name = "AppGwSslPolicy20220101S" # TLS 1.2 and later
  }

  gateway_ip_configuration {
    name      = "gateway"
    subnet_id = azurerm_subnet.gateway.id
  }

  frontend_ip_configuration {
    name                 = "public"
    public_ip_address_id = azurerm_public_ip.app_gateway.id
  }

  frontend_ip_configuration {
    name                          = "private"
    subnet_id                     = azurerm_subnet.gateway.id
    private_ip_address_allocation = "Static"
    private_ip_address            = local.app_gateway_private_ip
  }

  frontend_port {
    name = "https"
    port = 443
  }

  frontend_port {
    name = "http"
    port = 80
  }

  # The wildcard certificate (design 7.4.1), named as the chart's
  # ingress.tls.appGatewaySslCertificate expects.
  dynamic "ssl_certificate" {
    for_each = var.tls_certificate_secret_id == null ? [] : [var.tls_certificate_secret_id]
    content {
      name                = "phonebill-tls"
      key_vault_secret_id = ssl_certificate.value
    }
  }

  backend_address_pool {
    name = local.agic_placeholder
  }

  backend_http_settings {
    name                  = local.agic_placeholder
    cookie_based_affinity = "Disabled"
    port                  = 8080
    protocol              = "Http"
    request_timeout       = 30
  }

  http_listener {
    name                           = local.agic_placeholder
    frontend_ip_configuration_name = "public"
    frontend_port_name             = "http"
    protocol                       = "Http"
  }

  request_routing_rule {
    name                       = local.agic_placeholder
    priority                   = 20000
    rule_type                  = "Basic"
    http_listener_name         = local.agic_placeholder
    backend_address_pool_name  = local.agic_placeholder
    backend_http_settings_name = local.agic_placeholder
  }

  lifecycle {
    ignore_changes = [
      backend_address_pool,
      backend_http_settings,
      frontend_port,
      http_listener,
      probe,
      redirect_configuration,
      request_routing_rule,
      url_path_map,
      tags,
    ]
  }

  depends_on = [azurerm_role_assignment.app_gateway_key_vault]
}
