{{/*
Pod template shared by the Deployments and the projector's replay CronJob.
Call with (dict "root" $ "name" <service> "svc" <service values>), plus for a one-off Job
"args" (container arguments; no probes), "restartPolicy", "labelName" (a name label of
its own, so the service's Service, HPA and PDB do not count the Job's pod), "command"
(another binary of the image in place of its entrypoint, e.g. the analyst tools) and
"identity" (whose account and secrets the pod has, e.g. <service>-migrate; default the
service's own).
*/}}
{{- define "phonebill.podTemplate" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $svc := .svc -}}
{{- $ctx := dict "root" $root "name" .name -}}
{{- $idCtx := dict "root" $root "name" (.identity | default .name) -}}
{{- $podCtx := dict "root" $root "name" (.labelName | default .name) "component" .name -}}
{{- $secretName := include "phonebill.secretName" $idCtx -}}
{{- $variables := include "phonebill.grants" (merge (dict "as" "variables") $idCtx) | fromJsonArray -}}
{{- $keyFiles := include "phonebill.grants" (merge (dict "as" "files") $idCtx) | fromJsonArray -}}
metadata:
  labels:
    {{- include "phonebill.labels" $podCtx | nindent 4 }}
    {{- if eq $v.secrets.provider "azure-key-vault" }}
    azure.workload.identity/use: "true"
    {{- end }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- if eq $v.secrets.provider "azure-key-vault" }}
    checksum/secret-provider: {{ include (print $root.Template.BasePath "/secretproviderclass.yaml") $root | sha256sum }}
    {{- end }}
    {{- if $v.metrics.scrapeAnnotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ $v.metrics.port | quote }}
    prometheus.io/path: {{ $v.metrics.path | quote }}
    {{- end }}
spec:
  serviceAccountName: {{ include "phonebill.componentName" $idCtx }}
  # The app never calls the Kubernetes API; workload identity and the CSI driver
  # get their own projected tokens.
  automountServiceAccountToken: false
  {{- with .restartPolicy }}
  restartPolicy: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ $svc.terminationGracePeriodSeconds | default 30 }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- with $v.scheduling.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.scheduling.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $v.scheduling.podAntiAffinity.enabled }}
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: {{ $v.scheduling.podAntiAffinity.weight }}
          podAffinityTerm:
            topologyKey: {{ $v.scheduling.podAntiAffinity.topologyKey }}
            labelSelector:
              matchLabels:
                {{- include "phonebill.selectorLabels" $ctx | nindent 16 }}
  {{- end }}
  {{- if $v.scheduling.zoneSpread.enabled }}
  topologySpreadConstraints:
    - maxSkew: {{ $v.scheduling.zoneSpread.maxSkew }}
      topologyKey: {{ $v.scheduling.zoneSpread.topologyKey }}
      whenUnsatisfiable: {{ $v.scheduling.zoneSpread.whenUnsatisfiable }}
      labelSelector:
        matchLabels:
          {{- include "phonebill.selectorLabels" $ctx | nindent 10 }}
      matchLabelKeys: [pod-template-hash]
  {{- end }}
  containers:
    - name: {{ .name }}
      image: {{ include "phonebill.image" $ctx }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      {{- with .command }}
      command:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .args }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: http
          containerPort: {{ $v.http.port }}
          protocol: TCP
        - name: metrics
          containerPort: {{ $v.metrics.port }}
          protocol: TCP
      envFrom:
        - configMapRef:
            name: {{ include "phonebill.fullname" $root }}-config
      env:
        {{- /* The secrets this service is granted, and no others (secrets.grants). */}}
        {{- range $keyFiles }}
        {{- /* A private key: a file, in this service's pod alone. */}}
        - name: {{ printf "PHONEBILL_%s_FILE" (. | replace "-" "_" | upper) }}
          value: {{ printf "%s/%s" $v.secrets.mountPath . | quote }}
        {{- end }}
        {{- range $variables }}
        {{- $envName := printf "PHONEBILL_%s" (. | replace "-" "_" | upper) }}
        {{- if hasSuffix "-database-url" . }}
        {{- /* The service's own login (command-database-url, ...) is its database URL;
        database-admin-url, the migration Job's alone, is PHONEBILL_DATABASE_ADMIN_URL. */}}
        {{- $envName = "PHONEBILL_DATABASE_URL" }}
        {{- end }}
        - name: {{ $envName }}
          valueFrom:
            secretKeyRef: {name: {{ $secretName }}, key: {{ . }}}
        {{- if eq . "query-role-password" }}
        {{- /* The projector's migration step makes query-service's read-only login with it. */}}
        - name: PHONEBILL_QUERY_ROLE_LOGIN
          value: "true"
        {{- end }}
        {{- end }}
        {{- if $root.Values.kafka.staticMembership }}
        - name: PHONEBILL_KAFKA_INSTANCE_ID
          valueFrom:
            fieldRef: {fieldPath: metadata.name}
        {{- end }}
        {{- range $k, $val := $svc.env }}
        - name: {{ $k }}
          value: {{ $val | toString | quote }}
        {{- end }}
      {{- if not .args }}
      livenessProbe:
        httpGet: {path: {{ $v.probes.liveness.path }}, port: http}
        initialDelaySeconds: {{ $v.probes.liveness.initialDelaySeconds }}
        periodSeconds: {{ $v.probes.liveness.periodSeconds }}
        timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
        failureThreshold: {{ $v.probes.liveness.failureThreshold }}
      readinessProbe:
        httpGet: {path: {{ $v.probes.readiness.path }}, port: http}
        initialDelaySeconds: {{ $v.probes.readiness.initialDelaySeconds }}
        periodSeconds: {{ $v.probes.readiness.periodSeconds }}
        timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
        failureThreshold: {{ $v.probes.readiness.failureThreshold }}
      {{- end }}
      {{- if and $svc.preStopSleepSeconds (not .args) }}
      lifecycle:
        preStop:
          exec:
            command: ["sleep", {{ $svc.preStopSleepSeconds | toString | quote }}]
      {{- end }}
      resources:
        {{- toYaml $svc.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.containerSecurityContext | nindent 8 }}
      volumeMounts:
        {{- if or $keyFiles (eq $v.secrets.provider "azure-key-vault") }}
        - name: secrets
          mountPath: {{ $v.secrets.mountPath }}
          readOnly: true
        {{- end }}
        - name: tmp
          mountPath: /tmp
  volumes:
    {{- if eq $v.secrets.provider "azure-key-vault" }}
    {{- /* Mounted in every pod: the driver syncs the service's Secret only while a pod
    mounts its class. The class holds this identity's grants alone. */}}
    - name: secrets
      csi:
        driver: secrets-store.csi.k8s.io
        readOnly: true
        volumeAttributes:
          secretProviderClass: {{ include "phonebill.componentName" $idCtx }}-key-vault
    {{- else if $keyFiles }}
    - name: secrets
      secret:
        secretName: {{ $secretName }}
        defaultMode: 0440
        items:
          {{- range $keyFiles }}
          - {key: {{ . }}, path: {{ . }}}
          {{- end }}
    {{- end }}
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
{{- end -}}
