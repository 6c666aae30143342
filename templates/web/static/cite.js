/* The "Cite" block of a summary page: shows the Copy buttons (hidden without script),
   copies the citation's text, and dates "Retrieved ..." with the reader's own today
   (the page may have been made on an earlier day). */
(function () {
  "use strict";
  var months = ["January", "February", "March", "April", "May", "June", "July",
                "August", "September", "October", "November", "December"];
  var today = new Date();
  var accessed = document.querySelectorAll(".cite .accessed");
  for (var i = 0; i < accessed.length; i++) {
    accessed[i].textContent = months[today.getMonth()] + " " + today.getDate() + ", " +
      today.getFullYear();
  }
  var status = document.querySelector(".cite .copy-status");
  function say(text) { if (status) { status.textContent = text; } }
  var buttons = document.querySelectorAll(".cite button.copy");
  if (!navigator.clipboard) { return; }
  for (var j = 0; j < buttons.length; j++) {
    buttons[j].hidden = false;
    buttons[j].addEventListener("click", function (event) {
      var source = document.getElementById(event.currentTarget.getAttribute("data-copy"));
      if (!source) { return; }
      var text = source.textContent.replace(/\s+/g, " ").trim();
      navigator.clipboard.writeText(text).then(
        function () { say("Copied to the clipboard."); },
        function () { say("Could not copy; select the text and copy it instead."); }
      );
    });
  }
})();
